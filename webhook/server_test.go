package webhook

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/policy-webhook/policy-webhook/certs"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/test/testenv"
)

// httpsServer is the bounded webhook server on a real TLS listener, with
// the real handlers over a synced judge of handlerPolicies.
type httpsServer struct {
	*testServer
	srv  *Server
	addr string
	url  string
	ca   *certs.CA
}

func startHTTPS(t *testing.T, l Limits, clientCAFile string) *httpsServer {
	t.Helper()
	return startHTTPSWith(t, l, clientCAFile, false)
}

func startHTTPSWith(t *testing.T, l Limits, clientCAFile string, http2 bool) *httpsServer {
	t.Helper()
	ca, err := certs.NewCA("server test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue(nil, []net.IP{net.IPv4(127, 0, 0, 1)}, 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, &setJudge{set: compileSet(t, testPolicyNamespace, handlerPolicies...), synced: true}, false)
	port := freePort(t)
	srv, err := NewServer(ServerOptions{
		Host: "127.0.0.1", Port: port, ClientCAFile: clientCAFile, EnableHTTP2: http2, Limits: l,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &pair, nil },
		Metrics:        ts.metrics, Registerer: ts.reg, Log: ts.logs.logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	for path, h := range ts.handlers {
		srv.Register(path, h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	started := srv.StartedChecker()
	waitFor(t, "the webhook server", func() bool { return started(nil) == nil })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	return &httpsServer{testServer: ts, srv: srv, addr: addr, url: "https://" + addr, ca: ca}
}

func (s *httpsServer) tlsConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.ca.CertPEM())
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

func (s *httpsServer) client(cfg *tls.Config) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

func (s *httpsServer) dial(t *testing.T) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", s.addr, s.tlsConfig())
	if err != nil {
		t.Fatalf("dialing the webhook: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedWithin reads from c until the server closes it and returns how
// long that took; it fails the test if the server has not within limit.
func closedWithin(t *testing.T, c net.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %s", limit)
	}
	return time.Since(start)
}

func reviewHeaders(path string, contentLength int) string {
	return "POST " + path + " HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(contentLength) + "\r\n\r\n"
}

// A client that sends its headers, its body or its next request too slowly
// loses the connection after the timeout, not after minutes.
func TestServerTimeouts(t *testing.T) {
	s := startHTTPS(t, Limits{ReadHeaderTimeout: 300 * time.Millisecond, ReadTimeout: 600 * time.Millisecond, IdleTimeout: 400 * time.Millisecond}, "")

	t.Run("headers", func(t *testing.T) {
		c := s.dial(t)
		if _, err := io.WriteString(c, "POST /validate-pods HTTP/1.1\r\nHost: w"); err != nil {
			t.Fatal(err)
		}
		if d := closedWithin(t, c, 10*time.Second); d < 200*time.Millisecond {
			t.Errorf("closed after %s, before the header timeout", d)
		}
	})
	t.Run("body", func(t *testing.T) {
		c := s.dial(t)
		if _, err := io.WriteString(c, reviewHeaders(PathPods, 7<<20)+"{"); err != nil {
			t.Fatal(err)
		}
		// A byte now and then does not keep it open.
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := c.Write([]byte(" ")); err != nil {
						return
					}
				}
			}
		}()
		if d := closedWithin(t, c, 10*time.Second); d < 400*time.Millisecond {
			t.Errorf("closed after %s, before the read timeout", d)
		}
	})
	t.Run("idle", func(t *testing.T) {
		c := s.dial(t)
		body := reviewBody(t, podRequest(t, admissionv1.Create, "", goodPod(), nil))
		if _, err := io.WriteString(c, reviewHeaders(PathPods, len(body))+string(body)); err != nil {
			t.Fatal(err)
		}
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, res.Body); err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("HTTP %d, %v", res.StatusCode, err)
		}
		res.Body.Close()
		closedWithin(t, c, 10*time.Second)
	})
}

// Bodies past the bytes in flight and requests past the requests in flight
// are refused with 429 and Retry-After, while a review of a few KiB is
// still judged.
func TestServerShedsLoad(t *testing.T) {
	const maxBytes = 256 << 10
	s := startHTTPS(t, Limits{MaxBytesInFlight: maxBytes, MaxRequestsInFlight: 1}, "")
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	s.srv.Register("/hold", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusTooManyRequests)
			return
		}
		entered <- struct{}{}
		<-release
	}))
	hc := s.client(s.tlsConfig())

	// One body holds 200 KiB of the 256 KiB and waits for the rest.
	held := s.dial(t)
	if _, err := io.WriteString(held, reviewHeaders(PathPods, 250<<10)+strings.Repeat(" ", 200<<10)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the held body to be read", func() bool { _, b := s.srv.limiter.inFlight(); return b >= 200<<10 })

	// A second one would pass the limit: refused before it is read when
	// its length says so, as it arrives when it does not (chunked).
	chunk := fmt.Sprintf("%x\r\n%s\r\n", 32<<10, strings.Repeat(" ", 32<<10))
	for name, req := range map[string]string{
		"declared": reviewHeaders(PathPods, 100<<10) + strings.Repeat(" ", 100<<10),
		"chunked": "POST " + PathPods + " HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
			strings.Repeat(chunk, 4),
	} {
		second := s.dial(t)
		go func() { _, _ = io.WriteString(second, req) }()
		res, err := http.ReadResponse(bufio.NewReader(second), nil)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") != "1" ||
			!strings.Contains(string(msg), "policy-webhook: overloaded: request bodies in flight would pass 262144 bytes, the limit (--max-bytes-in-flight)") {
			t.Errorf("%s large body: HTTP %d, Retry-After %q, %q", name, res.StatusCode, res.Header.Get("Retry-After"), msg)
		}
	}

	// A review of a few KiB is judged all the same.
	if resp := postReview(t, hc, s.url+PathPods, podRequest(t, admissionv1.Create, "", goodPod(), nil)); !resp.Allowed {
		t.Errorf("a small review beside the held body: %+v", resp.Result)
	}

	// One request being judged takes the only slot: the next is refused.
	go func() {
		res, err := hc.Post(s.url+"/hold", "application/json", strings.NewReader("{}"))
		if err == nil {
			res.Body.Close()
		}
	}()
	<-entered
	res, err := hc.Post(s.url+PathPods, "application/json", bytes.NewReader(reviewBody(t, podRequest(t, admissionv1.Create, "", goodPod(), nil))))
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") != "1" ||
		!strings.Contains(string(msg), "1 requests being judged, the limit (--max-requests-in-flight)") {
		t.Errorf("past the requests in flight: HTTP %d, Retry-After %q, %q", res.StatusCode, res.Header.Get("Retry-After"), msg)
	}
	close(release)
	if got := testutil.ToFloat64(s.metrics.requestErrors.WithLabelValues(errShed)); got != 3 {
		t.Errorf("overloaded requests counted %v, want 3", got)
	}
	held.Close()
	waitFor(t, "the held bytes to be given back", func() bool { n, b := s.srv.limiter.inFlight(); return n == 0 && b == 0 })
}

// A body whose declared length no retry could get past gets 413 and the
// connection closed, before a byte of it is read: over the body limit (a
// 100 MB review), or over the whole budget of bytes in flight; never 429,
// which the API server would retry in vain.
func TestServerRefusesDeclaredTooLarge(t *testing.T) {
	const budget = 1 << 20
	defaults, small := startHTTPS(t, Limits{}, ""), startHTTPS(t, Limits{MaxBytesInFlight: budget}, "")
	for name, c := range map[string]struct {
		s      *httpsServer
		length int
		limit  int
	}{
		"100 MB, over the review limit":   {defaults, 100 << 20, DefaultMaxRequestBytes},
		"8 MiB, over the review limit":    {defaults, 8 << 20, DefaultMaxRequestBytes},
		"2 MiB, over the bytes in flight": {small, 2 << 20, budget},
	} {
		conn := c.s.dial(t)
		// Headers only: the answer must not wait for the body.
		if _, err := io.WriteString(conn, reviewHeaders(PathPods, c.length)); err != nil {
			t.Fatal(err)
		}
		if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		msg, _ := io.ReadAll(res.Body)
		res.Body.Close()
		want := fmt.Sprintf("policy-webhook: the request body of %d bytes is larger than the limit of %d bytes", c.length, c.limit)
		if res.StatusCode != http.StatusRequestEntityTooLarge || res.Header.Get("Retry-After") != "" || !res.Close ||
			!strings.Contains(string(msg), want) {
			t.Errorf("%s: HTTP %d, Retry-After %q, close %v, %q; want 413, no Retry-After, the connection closed, %q",
				name, res.StatusCode, res.Header.Get("Retry-After"), res.Close, msg, want)
		}
	}
	for _, s := range []*httpsServer{defaults, small} {
		tooLarge := testutil.ToFloat64(s.metrics.requestErrors.WithLabelValues(errTooLarge))
		shed := testutil.ToFloat64(s.metrics.requestErrors.WithLabelValues(errShed))
		if tooLarge == 0 || shed != 0 {
			t.Errorf("counted %v too large and %v overloaded, want some and none", tooLarge, shed)
		}
	}
}

// TLS 1.2 without an AEAD suite is refused; with one it is served.
func TestServerCipherSuites(t *testing.T) {
	s := startHTTPS(t, Limits{}, "")
	for suite, ok := range map[uint16]bool{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA:    false,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA:    false,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256: false,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: true,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: true,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305:  true,
	} {
		cfg := s.tlsConfig()
		cfg.MaxVersion = tls.VersionTLS12
		cfg.CipherSuites = []uint16{suite}
		c, err := tls.Dial("tcp", s.addr, cfg)
		if err == nil {
			c.Close()
		}
		if (err == nil) != ok {
			t.Errorf("TLS 1.2 with %s only: handshake error %v, want success %v", tls.CipherSuiteName(suite), err, ok)
		}
	}
}

// With client CAs, only a caller presenting a certificate they signed is
// served; any other is refused at the handshake, before HTTP. A renewed CA
// file is taken up without a restart.
func TestServerClientCertificates(t *testing.T) {
	caFile := filepath.Join(t.TempDir(), "client-ca.crt")
	clientCA, err := certs.NewCA("API server client CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, clientCA.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startHTTPS(t, Limits{}, caFile)
	withCert := func(ca *certs.CA) *tls.Config {
		cfg := s.tlsConfig()
		if ca != nil {
			certPEM, keyPEM, err := ca.IssueClient("kube-apiserver", 30*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				t.Fatal(err)
			}
			// Sent whatever CAs the server names, as an attacker would.
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
		}
		return cfg
	}
	other, err := certs.NewCA("another CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	review := func(cfg *tls.Config) error {
		res, err := s.client(cfg).Post(s.url+PathPods, "application/json", bytes.NewReader(reviewBody(t, podRequest(t, admissionv1.Create, "", goodPod(), nil))))
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d", res.StatusCode)
		}
		return nil
	}
	for name, c := range map[string]struct {
		cfg  *tls.Config
		want string // "" is served
	}{
		"no certificate":           {withCert(nil), "certificate required"},
		"certificate of other CA":  {withCert(other), "unknown certificate authority"},
		"certificate of client CA": {withCert(clientCA), ""},
	} {
		err := review(c.cfg)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
		// TLS 1.2 finishes the handshake only once the server has
		// checked the client: the refusal is the handshake's.
		cfg := c.cfg.Clone()
		cfg.MaxVersion = tls.VersionTLS12
		conn, err := tls.Dial("tcp", s.addr, cfg)
		if err == nil {
			conn.Close()
		}
		if (err == nil) != (c.want == "") {
			t.Errorf("%s, TLS 1.2 handshake: %v", name, err)
		}
	}
	if got := testutil.ToFloat64(s.metrics.admissions.WithLabelValues("Pod", "CREATE", "allowed")); got != 1 {
		t.Errorf("%v Pods judged, want 1: a refused caller reached the handler", got)
	}
	if err := s.srv.StartedChecker()(nil); err != nil {
		t.Errorf("webhook-server readiness with client certificates required: %v", err)
	}

	// The CA renewed in the file: taken up on its own, the new one is
	// trusted, the old one not.
	renewed, err := certs.NewCA("API server client CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, renewed.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the renewed client CA", func() bool { return review(withCert(renewed)) == nil })
	if err := review(withCert(clientCA)); err == nil {
		t.Errorf("certificate of the replaced CA: served")
	}
	// A file with no certificate keeps the CAs in force.
	if err := os.WriteFile(caFile, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.srv.clientCAs.RunOnce(t.Context()); err == nil || !strings.Contains(err.Error(), "error loading CA bundle") {
		t.Errorf("reloading a file without certificates: %v", err)
	}
	if err := review(withCert(renewed)); err != nil {
		t.Errorf("after a bad CA file: %v", err)
	}
}

// HTTP/1.1 unless HTTP/2 is enabled; then a client offering h2 speaks it.
func TestServerProtocols(t *testing.T) {
	for _, http2 := range []bool{false, true} {
		s := startHTTPSWith(t, Limits{}, "", http2)
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: s.tlsConfig(), ForceAttemptHTTP2: true}}
		res, err := hc.Post(s.url+PathPods, "application/json", bytes.NewReader(reviewBody(t, podRequest(t, admissionv1.Create, "", goodPod(), nil))))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		want := map[bool]int{false: 1, true: 2}[http2]
		if res.StatusCode != http.StatusOK || res.ProtoMajor != want {
			t.Errorf("enableHTTP2=%v: HTTP %d over %s, want 200 over HTTP/%d", http2, res.StatusCode, res.Proto, want)
		}
	}
}

// The TLS settings on top of whatever the server starts from: HTTP/2
// offered only when enabled, TLS 1.2 at least, the watcher's certificate
// either way.
func TestTLSOption(t *testing.T) {
	cert := &tls.Certificate{}
	get := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil }
	for _, c := range []struct {
		http2 bool
		want  []string
	}{
		{false, []string{"http/1.1"}},
		{true, []string{"h2", "http/1.1"}},
	} {
		for _, start := range [][]string{nil, {"h2"}, {"http/1.1"}} {
			cfg := &tls.Config{NextProtos: start}
			TLSOption(get, c.http2)(cfg)
			if !slices.Equal(cfg.NextProtos, c.want) {
				t.Errorf("enableHTTP2=%v, starting from %q: NextProtos %q, want %q", c.http2, start, cfg.NextProtos, c.want)
			}
		}
		cfg := &tls.Config{}
		TLSOption(get, c.http2)(cfg)
		if cfg.MinVersion != tls.VersionTLS12 {
			t.Errorf("enableHTTP2=%v: MinVersion %x, want TLS 1.2", c.http2, cfg.MinVersion)
		}
		if got, _ := cfg.GetCertificate(nil); got != cert {
			t.Errorf("enableHTTP2=%v: GetCertificate is not the watcher's", c.http2)
		}
	}
}

func postReview(t *testing.T, c *http.Client, url string, r *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	t.Helper()
	res, err := c.Post(url, "application/json", bytes.NewReader(reviewBody(t, r)))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: HTTP %d: %s", url, res.StatusCode, body)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &out); err != nil || out.Response == nil || out.Response.UID != r.UID {
		t.Fatalf("POST %s: bad review %s (%v)", url, body, err)
	}
	return out.Response
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	testenv.Until(t, 20*time.Second, what, ok)
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := devenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}
