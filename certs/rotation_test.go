package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// rotationBound is how long a rotation may take to reach new handshakes. It is
// an upper bound polled against, not a speed claim: certwatcher reacts to the
// ..data swap through inotify at once, and re-reads every 10s besides.
const rotationBound = 30 * time.Second

// TestCertwatcherServesRotatedSecretVolume proves the production reload path
// (certwatcher behind tls.Config.GetCertificate, as controller-runtime's
// webhook server wires it) picks up certificates rotated the way the kubelet
// rotates a Secret volume, while requests keep flowing and none fails.
func TestCertwatcherServesRotatedSecretVolume(t *testing.T) {
	// certwatcher logs through controller-runtime's logger; go test shows it
	// only when the test fails.
	ctrllog.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true)))

	ca := newTestCA(t)
	dir := t.TempDir()
	serials := []*big.Int{rotate(t, ca, dir)}

	cw, err := certwatcher.New(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	watchDone := make(chan error, 1)
	go func() { watchDone <- cw.Start(ctx) }()

	addr := serveTLS(t, &tls.Config{GetCertificate: cw.GetCertificate, MinVersion: tls.VersionTLS12})
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM())
	load := startLoad(addr, roots, 2)

	if !load.waitFor(serials[0], rotationBound) {
		t.Fatalf("no request succeeded with the initial certificate: %v", load.stop())
	}
	for i := range 3 {
		// Rotate amid traffic, not into an idle server.
		if !load.waitForMore(20, rotationBound) {
			t.Fatalf("requests stopped flowing before rotation %d: %v", i+1, load.stop().failures)
		}
		serials = append(serials, rotate(t, ca, dir))
		start := time.Now()
		if !load.waitFor(serials[len(serials)-1], rotationBound) {
			t.Fatalf("rotation %d: no handshake got the new certificate within %s", i+1, rotationBound)
		}
		t.Logf("rotation %d reached the request loop after %s", i+1, time.Since(start))
	}
	latest := serials[len(serials)-1]
	// A handshake that starts now gets the latest certificate.
	if got := handshakeSerial(t, addr, roots); got.Cmp(latest) != 0 {
		t.Errorf("a new handshake got serial %x, want the latest %x", got, latest)
	}

	results := load.stop()
	cancel()
	if err := <-watchDone; err != nil {
		t.Errorf("certwatcher: %v", err)
	}
	checkLoad(t, results, serials)
}

// rotate issues a new serving certificate for the loopback address, writes it
// into dir as a Secret volume update, and returns its serial number.
func rotate(t *testing.T, ca *CA, dir string) *big.Int {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{CertFile: certPEM, KeyFile: keyPEM, CAFile: ca.CertPEM()}
	if err := WriteSecretVolume(dir, files); err != nil {
		t.Fatal(err)
	}
	return parseCertPEM(t, certPEM).SerialNumber
}

// serveTLS serves a trivial handler over TLS on a loopback port with config
// only (no static certificate, so every handshake asks GetCertificate) and
// returns its address.
func serveTLS(t *testing.T, config *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }),
		TLSConfig:         config,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serving: %v", err)
		}
	})
	return ln.Addr().String()
}

func handshakeSerial(t *testing.T, addr string, roots *x509.CertPool) *big.Int {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

// load is a set of workers that each send requests back to back, every one
// over a new connection and so a new handshake, recording the serial number
// of the certificate each was served with.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	results loadResults
	seen    map[string]bool // serials (hex) any request has been served with
}

type loadResults struct {
	perWorker [][]*big.Int // serials in the order each worker got them
	failures  []error
}

func startLoad(addr string, roots *x509.CertPool, workers int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel, seen: map[string]bool{}}
	l.results.perWorker = make([][]*big.Int, workers)
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			DisableKeepAlives: true,
		},
	}
	for w := range workers {
		l.wg.Go(func() {
			for ctx.Err() == nil {
				serial, err := get(ctx, client, "https://"+addr+"/")
				if ctx.Err() != nil {
					return // stopping, not failing
				}
				l.record(w, serial, err)
			}
		})
	}
	return l
}

func get(ctx context.Context, client *http.Client, url string) (*big.Int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading response: %w", err)
	}
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		return nil, fmt.Errorf("response %s %q", resp.Status, body)
	}
	return resp.TLS.PeerCertificates[0].SerialNumber, nil
}

func (l *load) record(worker int, serial *big.Int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.results.failures = append(l.results.failures, err)
		return
	}
	l.results.perWorker[worker] = append(l.results.perWorker[worker], serial)
	l.seen[serial.Text(16)] = true
}

// waitFor polls until some request was served with serial, up to bound.
func (l *load) waitFor(serial *big.Int, bound time.Duration) bool {
	return poll(bound, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.seen[serial.Text(16)]
	})
}

// waitForMore polls until n more requests than now have succeeded, up to bound.
func (l *load) waitForMore(n int, bound time.Duration) bool {
	target := l.succeeded() + n
	return poll(bound, func() bool { return l.succeeded() >= target })
}

// poll reports whether cond held within bound.
func poll(bound time.Duration, cond func() bool) bool {
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, bound, true,
		func(context.Context) (bool, error) { return cond(), nil })
	return err == nil
}

func (l *load) succeeded() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, got := range l.results.perWorker {
		n += len(got)
	}
	return n
}

func (l *load) stop() loadResults {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.results
}

// checkLoad asserts no request failed and that each worker's handshakes only
// ever moved forward through serials (issued in that order): once a handshake
// got a certificate, no later one got an older.
func checkLoad(t *testing.T, results loadResults, serials []*big.Int) {
	t.Helper()
	for _, err := range results.failures {
		t.Errorf("request failed: %v", err)
	}
	order := map[string]int{}
	for i, s := range serials {
		order[s.Text(16)] = i
	}
	total := 0
	for w, got := range results.perWorker {
		total += len(got)
		last := 0
		for i, s := range got {
			n, ok := order[s.Text(16)]
			if !ok {
				t.Fatalf("worker %d request %d: served with unknown serial %x", w, i, s)
			}
			if n < last {
				t.Errorf("worker %d request %d: served certificate %d after certificate %d", w, i, n, last)
			}
			last = n
		}
	}
	t.Logf("%d requests, %d failed", total, len(results.failures))
}
