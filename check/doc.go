// Package check runs the policy engine offline on files, for `policy-webhook
// check`: CI and authors see the webhook's verdicts before anything reaches a
// cluster. Cluster state comes from the files: Namespaces feed
// namespaceSelector, and objects are judged in input order, as if applied.
package check
