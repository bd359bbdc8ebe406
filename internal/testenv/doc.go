// Package testenv runs the product on a real local control plane: kube-apiserver
// and etcd started through controller-runtime's envtest with the project's CRDs
// installed, the webhook served in process over TLS with a throwaway CA, and a
// ValidatingWebhookConfiguration that makes the API server call it.
//
// hack/devcluster, the end-to-end tests and the other proofs share it so that
// every one of them exercises the same wiring a cluster would: the API server
// dials the webhook over real TLS, nothing is faked in between.
package testenv
