// Package certmanager holds the proofs that the install in manifests/ works
// with cert-manager, run on a local control plane (kube-apiserver and etcd
// through envtest, no cluster, no container engine):
//
//   - manifests/default renders with kustomize (the library kubectl v1.37
//     uses) into exactly the objects the install promises, and every one of
//     them is accepted by server-side apply (dry-run) on an API server that
//     has cert-manager's own CRDs;
//   - cert-manager's real cainjector copies the CA of the serving
//     Certificate's Secret into the rendered ValidatingWebhookConfiguration,
//     after which the API server calls the webhook over TLS and its
//     decisions reach the user;
//   - a renewal (new key and certificate in the Secret, the mounted
//     directory swapped the way the kubelet does it) loses no admission.
//
// Everything is in the _test.go files; this file only documents the package.
package certmanager
