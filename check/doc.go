// Package check runs the policy engine offline, on files: the policy a
// cluster would hold and the objects a pipeline is about to apply. It is what
// `policy-webhook check` does, so CI and authors see the verdicts the webhook
// would give before anything reaches a cluster.
//
// Cluster state that rules read (namespace labels, existing MyApples) comes
// from the files themselves: Namespaces feed namespaceSelector, and objects
// are judged in input order, as if applied one after another.
package check
