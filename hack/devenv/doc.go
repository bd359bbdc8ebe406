// Package devenv is the one local control plane of every test and tool that
// needs one: kube-apiserver and etcd started through controller-runtime's
// envtest with the project's CRDs installed (and any others a test adds), the
// ValidatingWebhookConfiguration that makes the API server call a webhook,
// and Poll, the one way to wait for something to happen.
//
// hack/devcluster, hack/loadgen and the tests (through test/testenv, which
// adds what takes a testing.TB) share it, so that each exercises the wiring a
// cluster would: the API server dials the webhook over real TLS, nothing is
// faked in between. It imports no test support, so the tools may link it; the
// webhook served in process is package hack/inprocess, apart so that the
// tests of cmd/policy-webhook/app can import this one.
package devenv
