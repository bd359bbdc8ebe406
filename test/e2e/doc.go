// Package e2e holds the end-to-end tests of policy-webhook: a real
// kube-apiserver and etcd (envtest, binaries from `make tools`) call the
// webhook, served in process by app.Run, over real TLS, through a
// ValidatingWebhookConfiguration, exactly as in a cluster. Assertions are on
// what users see: the refusal messages and warnings the API server returns.
//
// Run them with `make test` (or `go test ./test/e2e` with KUBEBUILDER_ASSETS
// set to the tools directory).
package e2e
