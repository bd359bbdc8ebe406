// Package policy is the policy language of policy-webhook: parsing a policy
// spec from either carrier (a ConfigMap's policy.yaml or an AdmissionPolicy's
// spec), compiling it once into a precompiled Policy, and evaluating Pods and
// MyApples against an immutable Set of compiled policies.
//
// It is pure Go: no clients, no goroutines, no I/O. Cluster state that rules
// refer to (namespace labels, existing MyApples) comes through the Cluster
// interface, so files feed it offline and the informer cache feeds it live.
package policy
