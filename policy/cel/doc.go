// Package cel compiles and evaluates the CEL parts of a policy (variables,
// matchConditions, validations), modelled on the in-tree
// ValidatingAdmissionPolicy (VAP) plugin and built on the same libraries,
// k8s.io/apiserver/pkg/cel: compile once, evaluate a precompiled form,
// errors as data.
//
// A Compiler holds one CEL environment per kind, at a pinned environment
// version (EnvironmentVersion) with VAP's libraries. `object` and
// `oldObject` are typed from the kind's schema (schemas/, kept by `make
// generate`). Compile parses, type-checks and estimates the cost of every
// expression, refusing one that its params alone make cost more than its
// per-expression limit (Limits).
//
// Expressions see what a VAP expression sees, with the same names and
// shapes: object, oldObject (null on CREATE), request, namespaceObject,
// params, variables; and cluster, the caller's view of cluster state:
// cluster.myApples(namespace) lists the MyApples of a namespace.
//
// Program.Evaluate never returns an error: an expression that fails is a
// violation of its validation, or nothing under failurePolicy: Ignore.
//
// Cost is held as VAP holds it, at runtime: each evaluation of an
// expression by a per-expression limit, and (unlike VAP, which gives each
// binding its own) all the CEL of one admission by one Budget, of cost and
// time, within which a namespace's own policies have a smaller part. What
// an expression costs through the object is not refused at compile time,
// since VAP accepts it; what its params make it cost is known exactly then
// (they are sized as they are), so an expression that with them must exceed
// its limit, whatever the object, is refused with its estimate.
package cel
