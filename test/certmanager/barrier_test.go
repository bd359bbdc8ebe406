package certmanager

import (
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/policy-webhook/policy-webhook/test/testenv"
)

// awaitAdmissionConfig waits until the API server's admission chain uses
// every webhook configuration written so far, not only its storage
// (testenv.AwaitAdmissionConfig says how): a caBundle a Get returns may not
// yet be the one the API server trusts.
func awaitAdmissionConfig(t *testing.T, cs kubernetes.Interface, what string) {
	t.Helper()
	took, err := testenv.AwaitAdmissionConfig(t.Context(), cs, 30*time.Second)
	if err != nil {
		t.Fatalf("the API server did not take up %s: %v", what, err)
	}
	t.Logf("the API server's admission chain took up %s within %s", what, took.Round(time.Millisecond))
}
