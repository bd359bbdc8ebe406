package certmanager

import "github.com/policy-webhook/policy-webhook/test/testenv"

// The issuing controller's part, done by the tests: see
// testenv.IssueCertificate and testenv.ApplyCertificateSecret.
type issued = testenv.IssuedCertificate

var (
	issue       = testenv.IssueCertificate
	applySecret = testenv.ApplyCertificateSecret
)
