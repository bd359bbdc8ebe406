package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/policy-webhook/policy-webhook/certs"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
)

// syncBuffer is a bytes.Buffer safe to read while the server writes logs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestServeFlagErrors(t *testing.T) {
	for name, c := range map[string]struct {
		args []string
		code int
		want string
	}{
		"no cert dir":    {nil, exitUsage, "--cert-dir is required"},
		"unknown flag":   {[]string{"--cert-dir=/x", "--bogus"}, exitUsage, "flag provided but not defined: -bogus"},
		"stray argument": {[]string{"--cert-dir=/x", "extra"}, exitUsage, `unexpected arguments ["extra"]`},
		"bad port":       {[]string{"--cert-dir=/x", "--port=http"}, exitUsage, `invalid value "http" for flag -port`},
		"help":           {[]string{"-h"}, 0, "Usage: policy-webhook serve --cert-dir DIR [flags]"},
		"unreadable kubeconfig": {[]string{"--cert-dir=/x", "--kubeconfig=/nonexistent/kubeconfig"}, 1,
			"loading kubeconfig /nonexistent/kubeconfig"},
	} {
		t.Run(name, func(t *testing.T) {
			var stderr syncBuffer
			if code := runServe(t.Context(), c.args, &stderr); code != c.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, c.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), c.want) {
				t.Errorf("stderr lacks %q:\n%s", c.want, stderr.String())
			}
		})
	}
}

// The flags of the contract, with their defaults, are all there.
func TestServeFlagDefaults(t *testing.T) {
	var stderr syncBuffer
	runServe(t.Context(), []string{"-h"}, &stderr)
	for _, want := range []string{
		"-kubeconfig string", "-policy-namespace string", `(default "policy-system")`,
		"-port int", "(default 9443)", "-cert-dir string",
		"-metrics-bind-address string", `(default ":8443")`, "-metrics-secure", "-client-ca-file string",
		"-read-header-timeout duration", "-read-timeout duration", "-write-timeout duration", "-idle-timeout duration",
		"-max-connections int", "-max-requests-in-flight int", "-max-bytes-in-flight int", "-memory-limit-ratio float",
		"-health-probe-bind-address string", `(default ":8081")`,
		"-fail-open-before-sync", "-enable-http2", "-pprof-bind-address string",
		"-shutdown-delay duration", "-graceful-shutdown-timeout duration", "-zap-log-level", "-max-cache-staleness duration",
		"-audit-interval duration", "(default 1m0s)",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("usage lacks %q", want)
		}
	}
}

// serve wires its flags into a running server: the probe and metrics
// addresses answer, the server is not ready (the API server in the
// kubeconfig cannot be reached, so the cache cannot sync), and cancelling
// the context, as SIGTERM does, exits 0.
func TestServeRunsUntilCancelled(t *testing.T) {
	dir := t.TempDir()
	writeServingCert(t, dir)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	port, probes, metrics := freeAddr(t), freeAddr(t), freeAddr(t)
	_, portNum, _ := net.SplitHostPort(port)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runServe(ctx, []string{
			"--kubeconfig", kubeconfig, "--cert-dir", dir, "--port", portNum,
			"--health-probe-bind-address", probes, "--metrics-bind-address", metrics, "--metrics-secure=false",
			"--shutdown-delay", "0s", "--policy-namespace", "platform",
		}, &stderr)
	}()

	c := &http.Client{Timeout: 2 * time.Second}
	err := devenv.Poll(t.Context(), 20*time.Second, func(context.Context) error {
		if code := get(c, "http://"+probes+"/healthz"); code != 200 {
			return fmt.Errorf("healthz answers %d", code)
		}
		// The metrics server is a runnable of its own, started beside the
		// probes: wait for it too rather than race it.
		if code := get(c, "http://"+metrics+"/metrics"); code != 200 {
			return fmt.Errorf("/metrics answers %d", code)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v; stderr:\n%s", err, stderr.String())
	}
	if code := get(c, "http://"+probes+"/readyz"); code == 200 {
		t.Errorf("ready although the API server is unreachable")
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d after cancellation; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not exit within 30s of cancellation")
	}
	// The log is zap's JSON, with the policy namespace the flag set.
	var started bool
	for _, line := range strings.Split(stderr.String(), "\n") {
		started = started || strings.Contains(line, `"msg":"Starting policy-webhook"`) && strings.Contains(line, `"policyNamespace":"platform"`)
	}
	if !started {
		t.Errorf("no start-up line with the namespace from --policy-namespace; stderr:\n%s", stderr.String())
	}
}

func get(c *http.Client, url string) int {
	res, err := c.Get(url)
	if err != nil {
		return 0
	}
	res.Body.Close()
	return res.StatusCode
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

func writeServingCert(t *testing.T, dir string) {
	t.Helper()
	ca, err := certs.NewCA("serve test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue(nil, []net.IP{net.IPv4(127, 0, 0, 1)}, 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteKeyPair(dir, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
}
