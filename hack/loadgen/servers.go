package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/policy-webhook/policy-webhook/certs"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/webhook"
)

// server is a webhook the harness runs as a child process.
type server struct {
	name       string
	child      *child
	url        string // https://127.0.0.1:port
	metricsURL string // "" when it has none (the no-op)
	pprofURL   string
}

// servingCert makes a throwaway CA and a serving certificate for
// 127.0.0.1 in dir, and a TLS config that trusts only that CA.
func servingCert(dir string) (*certs.CA, *tls.Config, error) {
	ca, err := certs.NewCA("loadgen CA", 24*time.Hour)
	if err != nil {
		return nil, nil, fmt.Errorf("making the CA: %w", err)
	}
	certPEM, keyPEM, err := ca.Issue([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, 12*time.Hour)
	if err != nil {
		return nil, nil, fmt.Errorf("issuing the serving certificate: %w", err)
	}
	if err := certs.WriteKeyPair(dir, certPEM, keyPEM); err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM())
	return ca, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

func freePorts(n int) ([]int, error) {
	ports := make([]int, n)
	for i := range ports {
		p, err := devenv.FreePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	return ports, nil
}

// startPolicyWebhook runs `policy-webhook serve` against the control plane
// and waits until /readyz says its caches have synced.
func startPolicyWebhook(ctx context.Context, bin, kubeconfig, certDir string, extra []string, logw io.Writer) (*server, error) {
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	addr := func(p int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)) }
	args := []string{"serve",
		"--kubeconfig", kubeconfig, "--cert-dir", certDir,
		"--port", strconv.Itoa(ports[0]),
		"--health-probe-bind-address", addr(ports[1]),
		"--metrics-bind-address", addr(ports[2]), "--metrics-secure=false",
		"--pprof-bind-address", addr(ports[3]),
		"--policy-namespace", webhook.DefaultPolicyNamespace,
		"--shutdown-delay", "0s",
	}
	args = append(args, extra...)
	c, err := startChild("policy-webhook", bin, args, logw)
	if err != nil {
		return nil, err
	}
	s := &server{
		name: "policy-webhook", child: c,
		url:        "https://" + addr(ports[0]),
		metricsURL: "http://" + addr(ports[2]) + "/metrics",
		pprofURL:   "http://" + addr(ports[3]) + "/debug/pprof",
	}
	if err := c.waitHTTP(ctx, 2*time.Minute, &http.Client{Timeout: 2 * time.Second}, "http://"+addr(ports[1])+"/readyz"); err != nil {
		c.stop()
		return nil, err
	}
	return s, nil
}

// startNoop runs the no-op webhook on the same certificate.
func startNoop(ctx context.Context, bin, certDir string, tlsConfig *tls.Config, logw io.Writer) (*server, error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	c, err := startChild("noop", bin, []string{"--cert-dir", certDir, "--port", strconv.Itoa(ports[0])}, logw)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	if err := c.waitHTTP(ctx, time.Minute, client, "https://"+addr+"/readyz"); err != nil {
		c.stop()
		return nil, err
	}
	return &server{name: "noop", child: c, url: "https://" + addr}, nil
}

// apiRequests is how many requests the server has made to the API server
// so far: client-go's rest_client_requests_total, which controller-runtime
// exposes on /metrics. The no-op has no client and makes none.
func (s *server) apiRequests(ctx context.Context) (float64, error) {
	if s.metricsURL == "" {
		return 0, nil
	}
	return scrapeSum(ctx, http.DefaultClient, s.metricsURL, "rest_client_requests_total")
}

// liveHeap forces a garbage collection and reads the live heap
// (runtime.MemStats.HeapAlloc) from the heap profile's text form, which
// pprof writes after collecting when asked with gc=1.
func (s *server) liveHeap(ctx context.Context) (float64, error) {
	// The first collection moves sync.Pool contents to the victim cache;
	// only the second frees them, so take the second reading.
	if _, err := s.heapAfterGC(ctx); err != nil {
		return 0, err
	}
	return s.heapAfterGC(ctx)
}

func (s *server) heapAfterGC(ctx context.Context) (float64, error) {
	url := s.pprofURL + "/heap?gc=1&debug=1"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, fmt.Errorf("building the heap profile request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("fetching %s: %w", url, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# HeapAlloc = "); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("parsing HeapAlloc from %s: %w", url, err)
			}
			return n, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("reading %s: %w", url, err)
	}
	return 0, fmt.Errorf("%s has no HeapAlloc line", url)
}

func (s *server) metric(ctx context.Context, name string) (float64, error) {
	return scrapeSum(ctx, http.DefaultClient, s.metricsURL, name)
}
