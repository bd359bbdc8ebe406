// Package certs makes and lays out the webhook's TLS serving certificates
// when cert-manager is not there to do it: for local runs and tests. A
// throwaway CA ([NewCA]) issues certificates ([CA.Issue]), written as plain
// files ([WriteKeyPair]) or the way the kubelet updates a mounted Secret
// volume ([WriteSecretVolume]), so rotation tests see what a pod sees.
package certs

// The file names of a kubernetes.io/tls Secret, as --cert-dir expects them.
const (
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
	CAFile   = "ca.crt"
)
