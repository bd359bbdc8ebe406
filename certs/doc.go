// Package certs makes and lays out the TLS serving certificates of the webhook
// when cert-manager is not there to do it: for local runs and for tests.
//
// The API server only calls a webhook over HTTPS, with a certificate it can
// verify against the caBundle of the ValidatingWebhookConfiguration. In a
// cluster cert-manager issues that certificate, the kubelet projects its Secret
// into the pod, and the server reloads it on rotation
// (sigs.k8s.io/controller-runtime/pkg/certwatcher). Locally nothing does, so
// this package provides a throwaway CA ([NewCA]) that issues serving
// certificates ([CA.Issue]), writes them as plain files ([WriteKeyPair]), and
// writes them the way the kubelet updates a mounted Secret volume
// ([WriteSecretVolume]), so that tests of certificate rotation exercise the same
// symlink swaps, and so the same file-system events, that a pod sees.
package certs

// The file names of a kubernetes.io/tls Secret, as cert-manager writes them and
// as the webhook's --cert-dir expects them.
const (
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
	CAFile   = "ca.crt"
)
