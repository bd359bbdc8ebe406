package app

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/policy-webhook/policy-webhook/certs"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/hack/workload"
	"github.com/policy-webhook/policy-webhook/test/testenv"
	"github.com/policy-webhook/policy-webhook/webhook"
)

// Run against an API server that cannot be reached: the informers never
// sync, which is exactly the state before sync that the webhook must handle
// (not ready, Pods refused with a clear message, policies still checked),
// and shutdown must still be orderly. Run against a real control plane is
// the end-to-end tests' (test/e2e).
func TestRunBeforeSyncAndShutdown(t *testing.T) {
	certDir, pool := writeServingCert(t)
	port, probes, metricsAddr := freePort(t), freeAddr(t), freeAddr(t)

	var apiRequests atomic.Int64
	cfg := &rest.Config{
		// Nothing listens on port 1: every request fails at once.
		Host: "https://127.0.0.1:1",
		WrapTransport: func(rt http.RoundTripper) http.RoundTripper {
			return roundTripFunc(func(r *http.Request) (*http.Response, error) {
				apiRequests.Add(1)
				return rt.RoundTrip(r)
			})
		},
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	onReady := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{
			RestConfig:             cfg,
			Host:                   "127.0.0.1",
			Port:                   port,
			CertDir:                certDir,
			MetricsBindAddress:     metricsAddr,
			HealthProbeBindAddress: probes,
			ShutdownDelay:          time.Second,
			OnReady:                func() { close(onReady) },
		})
	}()

	probe := &http.Client{Timeout: 2 * time.Second}
	webhookURL := "https://127.0.0.1:" + strconv.Itoa(port)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}

	waitFor(t, "healthz", func() bool { return status(probe, "http://"+probes+"/healthz") == 200 })
	waitFor(t, "the webhook server's readiness check", func() bool {
		return status(probe, "http://"+probes+"/readyz/webhook-server") == 200
	})
	for check, want := range map[string]int{"certificate": 200, "shutdown": 200, "policy-cache": 500, "": 500} {
		if got := status(probe, "http://"+probes+"/readyz/"+check); got != want {
			t.Errorf("/readyz/%s: HTTP %d, want %d", check, got, want)
		}
	}

	// A Pod before sync: refused, and told why.
	pod := workload.DeploymentPod(false, 2)
	resp := postReview(t, hc, webhookURL+webhook.PathPods, request("Pod", "pods", pod.Namespace, pod))
	if resp.Allowed || resp.Result == nil || resp.Result.Code != 503 || !strings.Contains(resp.Result.Message, "has not synced yet") {
		t.Errorf("pod before sync: %+v", resp.Result)
	}
	// A policy is still checked: it needs no cache.
	bad := devenv.PolicyConfigMap("team-a", "registries", "pods:\n  allowedRegistrie: [x]\n")
	bad.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}
	resp = postReview(t, hc, webhookURL+webhook.PathPolicies, request("ConfigMap", "configmaps", bad.Namespace, bad))
	if want := "ConfigMap team-a/registries is not a valid policy: policy.yaml: pods.allowedRegistrie: unknown field"; resp.Allowed || resp.Result.Message != want {
		t.Errorf("invalid policy: allowed=%v %q, want %q", resp.Allowed, resp.Result.Message, want)
	}

	// TLS 1.1 is refused.
	old := &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}
	if conn, err := tls.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port), old); err == nil {
		conn.Close()
		t.Errorf("a TLS 1.1 handshake succeeded")
	}

	// HTTP/2 is not offered unless asked for.
	alpn := &tls.Config{RootCAs: pool, NextProtos: []string{"h2", "http/1.1"}}
	if conn, err := tls.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port), alpn); err != nil {
		t.Errorf("TLS handshake offering h2 and http/1.1: %v", err)
	} else {
		if got := conn.ConnectionState().NegotiatedProtocol; got != "http/1.1" {
			t.Errorf("negotiated protocol %q, want http/1.1 (HTTP/2 is off by default)", got)
		}
		conn.Close()
	}

	metricsText := get(t, probe, "http://"+metricsAddr+"/metrics")
	for _, want := range []string{
		`policy_webhook_admissions_total{kind="Pod",operation="CREATE",verdict="not_synced"}`,
		`policy_webhook_admissions_total{kind="ConfigMap",operation="CREATE",verdict="denied"}`,
		`policy_webhook_request_errors_total{reason="too_large"} 0`,
		`policy_webhook_admission_duration_seconds_bucket{kind="Pod"`,
		`policy_webhook_request_errors_total{reason="overloaded"} 0`,
		"policy_webhook_requests_in_flight 0", "policy_webhook_request_bytes_in_flight 0",
		// The Go and process collectors the README promises.
		"go_goroutines ", "go_memstats_heap_inuse_bytes ", "process_resident_memory_bytes ", "process_open_fds ",
	} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if apiRequests.Load() == 0 {
		t.Errorf("no request went through RestConfig's transport: the clients were not built from it")
	}
	select {
	case <-onReady:
		t.Errorf("OnReady was called before the cache synced")
	default:
	}

	// Shutdown: not ready at once, still serving during the delay, then
	// gone, and Run returns nil.
	cancel()
	stopped := time.Now()
	waitFor(t, "readyz to fail on shutdown", func() bool {
		return status(probe, "http://"+probes+"/readyz/shutdown") == 500
	})
	resp = postReview(t, hc, webhookURL+webhook.PathPolicies, request("ConfigMap", "configmaps", bad.Namespace, bad))
	if resp.Allowed {
		t.Errorf("during the shutdown delay: allowed an invalid policy")
	}
	if time.Since(stopped) >= time.Second {
		t.Fatalf("the checks took longer than the shutdown delay; cannot tell whether it was honoured")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of cancellation")
	}
	if d := time.Since(stopped); d < time.Second {
		t.Errorf("Run returned %s after cancellation, before the 1s shutdown delay", d)
	}
	if res, err := hc.Get(webhookURL + webhook.PathPods); err == nil {
		res.Body.Close()
		t.Errorf("the webhook server still accepts connections after Run returned")
	}
}

func TestRunRefusesBadOptions(t *testing.T) {
	certDir, _ := writeServingCert(t)
	cfg := &rest.Config{Host: "https://127.0.0.1:1"}
	for name, c := range map[string]struct {
		opts Options
		want string
	}{
		"no rest config": {Options{CertDir: certDir}, "RestConfig is required"},
		"no cert dir":    {Options{RestConfig: cfg}, "CertDir is required"},
		"bad port":       {Options{RestConfig: cfg, CertDir: certDir, Port: 70000}, "port 70000 is out of range"},
		"missing certificate files": {Options{RestConfig: cfg, CertDir: t.TempDir(), Port: freePort(t)},
			"loading the serving certificate from "},
	} {
		t.Run(name, func(t *testing.T) {
			err := Run(t.Context(), c.opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Run: %v, want an error with %q", err, c.want)
			}
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// request is a CREATE of obj, a core/v1 kind, as the API server sends it.
func request(kind, resource, namespace string, obj runtime.Object) *admissionv1.AdmissionRequest {
	return &admissionv1.AdmissionRequest{
		UID: types.UID("run-test-" + kind), Kind: metav1.GroupVersionKind{Version: "v1", Kind: kind},
		Resource: metav1.GroupVersionResource{Version: "v1", Resource: resource}, Namespace: namespace,
		Operation: admissionv1.Create, Object: runtime.RawExtension{Object: obj},
	}
}

func postReview(t *testing.T, c *http.Client, url string, r *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	t.Helper()
	body, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: r})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer res.Body.Close()
	body, _ = io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: HTTP %d: %s", url, res.StatusCode, body)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &out); err != nil || out.Response == nil || out.Response.UID != r.UID {
		t.Fatalf("POST %s: bad review %s (%v)", url, body, err)
	}
	return out.Response
}

func status(c *http.Client, url string) int {
	res, err := c.Get(url)
	if err != nil {
		return 0
	}
	res.Body.Close()
	return res.StatusCode
}

func get(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	res, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	testenv.Until(t, 20*time.Second, what, ok)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func freePort(t *testing.T) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(freeAddr(t))
	n, _ := strconv.Atoi(p)
	return n
}

// writeServingCert writes a self-signed certificate for 127.0.0.1 into a
// new directory and returns it with a pool that trusts it.
func writeServingCert(t *testing.T) (string, *x509.CertPool) {
	t.Helper()
	return writeCert(t, time.Now().Add(time.Hour))
}

func writeCert(t *testing.T, notAfter time.Time) (string, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "policy-webhook test"},
		NotBefore:    notAfter.Add(-2 * time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	for name, data := range map[string][]byte{
		certs.CertFile: certPEM,
		certs.KeyFile:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(certPEM) {
		t.Fatal(fmt.Errorf("bad test certificate"))
	}
	return dir, pool
}
