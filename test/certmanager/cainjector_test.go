package certmanager

import (
	"context"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/policy-webhook/policy-webhook/test/testenv"
)

// startCAInjector runs cert-manager's real cainjector controllers against
// the API server until the test ends (testenv.StartCAInjector).
func startCAInjector(ctx context.Context, t *testing.T, cfg *rest.Config) {
	t.Helper()
	stop, err := testenv.StartCAInjector(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
}
