package access

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/policy-webhook/policy-webhook/certs"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/test/inprocess"
	"github.com/policy-webhook/policy-webhook/test/testenv"
	"github.com/policy-webhook/policy-webhook/webhook"
)

// The API server's identity towards webhooks: any name; the webhook checks
// the CA, not the name.
const apiServerClientName = "kube-apiserver-webhook-client"

// TestOnlyTheAPIServer runs the control plane with an AdmissionConfiguration
// whose kubeConfigFile gives the API server a client certificate for
// webhooks, and the webhook with --client-ca-file naming its CA and with
// secure metrics. The API server's admissions pass; a caller without the
// certificate is refused at the handshake; /metrics answers only a token the
// API server authorizes for get on /metrics.
func TestOnlyTheAPIServer(t *testing.T) {
	log := logr.FromSlogHandler(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	// The client CA, the API server's certificate from it, and the files
	// the API server reads them from.
	dir := t.TempDir()
	clientCA, err := certs.NewCA("API server client CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := clientCA.IssueClient(apiServerClientName, 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	caFile := write(t, dir, "client-ca.crt", string(clientCA.CertPEM()))
	// "*" matches every webhook the API server calls; a cluster would name
	// the Service (policy-webhook.policy-system.svc).
	kubeconfig := write(t, dir, "webhook-kubeconfig.yaml", fmt.Sprintf(`apiVersion: v1
kind: Config
users:
- name: "*"
  user:
    client-certificate-data: %s
    client-key-data: %s
`, base64.StdEncoding.EncodeToString(certPEM), base64.StdEncoding.EncodeToString(keyPEM)))
	admission := write(t, dir, "admission.yaml", fmt.Sprintf(`apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: ValidatingAdmissionWebhook
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: %s
`, kubeconfig))

	cp := testenv.ControlPlaneForTest(t, devenv.ControlPlaneOptions{
		Log:            log,
		APIServerFlags: map[string]string{"admission-control-config-file": admission},
	})
	if err := cp.EnsureNamespace(ctx, webhook.DefaultPolicyNamespace, nil); err != nil {
		t.Fatal(err)
	}
	wh := inprocess.StartForTest(t, inprocess.Options{
		RestConfig: cp.Config, Log: log.WithName("webhook"),
		ClientCAFile: caFile, MetricsSecure: true,
	})
	if err := devenv.Register(ctx, cp.Client, devenv.WebhookConfiguration(wh.URL, wh.CA.CertPEM(), wh.PolicyNamespace)); err != nil {
		t.Fatal(err)
	}

	t.Run("the API server's admissions pass", func(t *testing.T) {
		// The registration probe: an invalid policy refused by the
		// webhook, which only a call that passed the handshake can do.
		if err := devenv.WaitCalled(ctx, cp.Client, wh.PolicyNamespace); err != nil {
			t.Fatal(err)
		}
		if err := cp.EnsureNamespace(ctx, "team-a", nil); err != nil {
			t.Fatal(err)
		}
		_, err := cp.Client.CoreV1().ConfigMaps(wh.PolicyNamespace).Create(ctx, devenv.PolicyConfigMap(wh.PolicyNamespace, "registries",
			"pods:\n  allowedRegistries: [registry.example.com/]\n"), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pod := func(image string) *corev1.Pod {
			return &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{GenerateName: "web-", Namespace: "team-a"},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: image}}},
			}
		}
		dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
		// The policy is in force once a Pod from elsewhere is refused.
		err = devenv.PollEvery(ctx, 50*time.Millisecond, 30*time.Second, func(ctx context.Context) error {
			_, err := cp.Client.CoreV1().Pods("team-a").Create(ctx, pod("evil.io/x:1"), dryRun)
			if err != nil && strings.Contains(err.Error(), "denied the request") && strings.Contains(err.Error(), "evil.io/x:1") {
				return nil
			}
			if err == nil {
				return errors.New("a Pod from evil.io was admitted")
			}
			return fmt.Errorf("a Pod from evil.io was not refused by the webhook: %w", err)
		})
		if err != nil {
			t.Fatalf("a Pod from an unlisted registry was never refused by the webhook: %v", err)
		}
		if _, err := cp.Client.CoreV1().Pods("team-a").Create(ctx, pod("registry.example.com/team-a/web:1.4.2"), dryRun); err != nil {
			t.Errorf("a Pod from the allowed registry: %v", err)
		}
	})

	t.Run("a caller without the certificate is refused at the handshake", func(t *testing.T) {
		addr := strings.TrimPrefix(wh.URL, "https://")
		// TLS 1.2: the handshake itself fails.
		cfg := wh.TLSConfig()
		cfg.MaxVersion = tls.VersionTLS12
		if conn, err := tls.Dial("tcp", addr, cfg); err == nil {
			conn.Close()
			t.Errorf("a TLS 1.2 handshake without a client certificate succeeded")
		} else if !strings.Contains(err.Error(), "handshake failure") && !strings.Contains(err.Error(), "bad certificate") {
			t.Errorf("TLS 1.2 without a client certificate: %v, want a handshake alert", err)
		}
		// TLS 1.3 (what the API server and curl negotiate): the server's
		// alert arrives before any HTTP is answered.
		res, err := wh.HTTPClient().Post(wh.URL+"/validate-pods", "application/json", strings.NewReader(`{}`))
		if err == nil {
			res.Body.Close()
			t.Fatalf("a caller without a client certificate got HTTP %d", res.StatusCode)
		}
		if !strings.Contains(err.Error(), "certificate required") {
			t.Errorf("without a client certificate: %v, want the handshake's \"certificate required\"", err)
		}
		// A certificate of another CA fares no better.
		other, err := certs.NewCA("someone else", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		otherCert, otherKey, err := other.IssueClient(apiServerClientName, 30*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.X509KeyPair(otherCert, otherKey)
		if err != nil {
			t.Fatal(err)
		}
		cfg = wh.TLSConfig()
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		if res, err := hc.Post(wh.URL+"/validate-pods", "application/json", strings.NewReader(`{}`)); err == nil {
			res.Body.Close()
			t.Errorf("a caller with another CA's certificate got HTTP %d", res.StatusCode)
		} else if !strings.Contains(err.Error(), "unknown certificate authority") {
			t.Errorf("another CA's certificate: %v, want \"unknown certificate authority\"", err)
		}
	})

	t.Run("metrics over HTTPS to authorized callers only", func(t *testing.T) {
		ns := "scrapers"
		if err := cp.EnsureNamespace(ctx, ns, nil); err != nil {
			t.Fatal(err)
		}
		// The reader role of the install, bound to one ServiceAccount.
		root, err := devenv.RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(root, "manifests", "rbac", "metrics_reader_role.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var reader rbacv1.ClusterRole
		if err := yaml.UnmarshalStrict(data, &reader); err != nil {
			t.Fatal(err)
		}
		rbac := cp.Client.RbacV1()
		if _, err := rbac.ClusterRoles().Create(ctx, &reader, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		token := func(sa string) string {
			t.Helper()
			if _, err := cp.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			tr, err := cp.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return tr.Status.Token
		}
		prometheus, stranger := token("prometheus"), token("stranger")
		_, err = rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "prometheus-reads-policy-webhook"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: reader.Name},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "prometheus", Namespace: ns}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}

		hc := wh.HTTPClient()
		scrape := func(token string) (int, string, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+wh.MetricsAddr+"/metrics", nil)
			if err != nil {
				return 0, "", err
			}
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			res, err := hc.Do(req)
			if err != nil {
				return 0, "", err
			}
			defer res.Body.Close()
			body, err := io.ReadAll(res.Body)
			return res.StatusCode, string(body), err
		}
		for name, c := range map[string]struct {
			token string
			code  int
		}{
			"no token":           {"", http.StatusUnauthorized},
			"a token not bound":  {stranger, http.StatusForbidden},
			"the reader's token": {prometheus, http.StatusOK},
		} {
			// RBAC bindings take effect within a moment: poll the
			// allowed case, check the refused ones once.
			var code int
			var body string
			err := devenv.PollEvery(ctx, 100*time.Millisecond, 20*time.Second, func(context.Context) error {
				var err error
				if code, body, err = scrape(c.token); err != nil {
					return err
				}
				if code != c.code && c.code == http.StatusOK {
					return fmt.Errorf("HTTP %d", code)
				}
				return nil
			})
			if err != nil || code != c.code {
				t.Errorf("%s: HTTP %d (%v), want %d", name, code, err, c.code)
				continue
			}
			if c.code == http.StatusOK {
				for _, want := range []string{"policy_webhook_admissions_total", "go_goroutines ", "process_resident_memory_bytes "} {
					if !strings.Contains(body, want) {
						t.Errorf("/metrics lacks %s", want)
					}
				}
			}
		}
		// A token the API server cannot read at all: its TokenReview
		// answers not authenticated, with an error; 401 all the same.
		if code, _, err := scrape("not-a-token"); err != nil || code != http.StatusUnauthorized {
			t.Errorf("a forged token: HTTP %d (%v), want 401", code, err)
		}
		// Plain HTTP is not served.
		if res, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + wh.MetricsAddr + "/metrics"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				t.Errorf("/metrics answered 200 over plain HTTP")
			}
		}
	})
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
