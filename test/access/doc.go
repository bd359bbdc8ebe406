// Package access tests who may talk to a running webhook, end to end on the
// local control plane: with --client-ca-file only the API server, which
// presents a client certificate through its AdmissionConfiguration, is
// served, and other callers are refused at the TLS handshake; metrics are
// served over HTTPS to callers the API server authenticates and authorizes.
package access
