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
// expression, refusing one that could cost more than EstimatedCostLimit.
//
// Expressions see what a VAP expression sees, with the same names and
// shapes: object, oldObject (null on CREATE), request, namespaceObject,
// params, variables; and cluster, the caller's view of cluster state:
// cluster.myApples(namespace) lists the MyApples of a namespace, and
// cluster.myAppleStats(namespace[, except]) reads their counts and quantity
// sums, in all and by color and size. The caller keeps both ready (Apples),
// so that reading them costs the same at any number of MyApples; a
// cluster.myApples call inside a loop is refused.
//
// Program.Evaluate never returns an error: an expression that fails is a
// violation of its validation, or nothing under failurePolicy: Ignore.
//
// Cost estimation sizes everything from the 3 MiB request limit, as CRD
// validation rules are sized, so a loop nested in another over an object's
// lists is refused. The runtime limits are the guarantee; the estimate
// refuses what could not run within them.
package cel
