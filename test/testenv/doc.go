// Package testenv is the one local control plane of every test and tool that
// needs one: kube-apiserver and etcd started through controller-runtime's
// envtest with the project's CRDs installed (and any others a test adds), the
// ValidatingWebhookConfiguration that makes the API server call a webhook,
// and Poll, the one way tests wait for something to happen.
//
// hack/devcluster, hack/loadgen, cache's tests, the end-to-end tests and
// the install proofs share it, so that each exercises the wiring a cluster
// would: the API server dials the webhook over real TLS, nothing is faked in
// between. The webhook served in process is package inprocess, apart so that
// the webhook package's own tests can import this one.
package testenv
