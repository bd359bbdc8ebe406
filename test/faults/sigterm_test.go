package faults

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/policy-webhook/policy-webhook/certs"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/test/testenv"
	"github.com/policy-webhook/policy-webhook/webhook"
)

// buildWebhook builds cmd/policy-webhook into dir, as `make build` does.
func buildWebhook(t *testing.T, dir string) string {
	t.Helper()
	root, err := devenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("finding the go command to build the webhook: %v", err)
	}
	bin := filepath.Join(dir, "policy-webhook")
	cmd := exec.CommandContext(t.Context(), goBin, "build", "-o", bin, "./cmd/policy-webhook")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the webhook: %v\n%s", err, out)
	}
	return bin
}

// servingCert writes a serving certificate for 127.0.0.1 into dir and
// returns the CA that signed it.
func servingCert(t *testing.T, dir string) *certs.CA {
	t.Helper()
	ca, err := certs.NewCA("fault suite CA", 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteSecretVolume(dir, map[string][]byte{certs.CertFile: certPEM, certs.KeyFile: keyPEM, certs.CAFile: ca.CertPEM()}); err != nil {
		t.Fatal(err)
	}
	return ca
}

// shutdownDelay is the binary's --shutdown-delay in the SIGTERM test.
const shutdownDelay = 2 * time.Second

// The policy-webhook binary sent SIGTERM while it answers about 500
// admissions a second: /readyz turns false first, the server keeps
// answering for --shutdown-delay, then stops accepting connections; no
// request it accepted fails or gets a wrong verdict, and it exits 0.
func TestSIGTERM(t *testing.T) {
	const (
		rate    = 500 // admissions a second
		workers = 16
	)
	dir := t.TempDir()
	bin := buildWebhook(t, dir)
	certDir := filepath.Join(dir, "certs")
	ca := servingCert(t, certDir)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := env.cp.WriteKubeConfig(kubeconfig); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	ns := namespace(t, "sigterm", nil)
	if err := putPolicy(ctx, ns, "registries", "pods:\n  allowedRegistries: [registry.example.com/]\n"); err != nil {
		t.Fatal(err)
	}

	ports := make([]int, 2)
	for i := range ports {
		p, err := devenv.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
	}
	url := "https://127.0.0.1:" + strconv.Itoa(ports[0])
	probe := "http://127.0.0.1:" + strconv.Itoa(ports[1]) + "/readyz"
	var out bytes.Buffer
	cmd := exec.Command(bin, "serve", "--kubeconfig", kubeconfig, "--cert-dir", certDir, "--port", strconv.Itoa(ports[0]),
		"--health-probe-bind-address", "127.0.0.1:"+strconv.Itoa(ports[1]), "--metrics-bind-address", "0",
		"--leader-elect=false", "--replica-name", "faults-sigterm", "--shutdown-delay", shutdownDelay.String())
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed once exitErr is set
	var exitErr error
	go func() {
		exitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	pc := &http.Client{Timeout: time.Second}
	ready := func() bool {
		res, err := pc.Get(probe)
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	}
	testenv.Until(t, time.Minute, "the webhook binary ready", ready)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM())
	tlsConfig := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig, MaxIdleConnsPerHost: workers}}
	defer hc.CloseIdleConnections()
	cases := []admissionCase{
		{"allowed registry", webhook.PathPods, podReview(ns, nil, "registry.example.com/app:1"), true, ""},
		{"denied registry", webhook.PathPods, podReview(ns, nil, "docker.io/library/nginx:1.27"), false, "not under an allowed registry"},
	}
	for _, cs := range cases {
		err := devenv.Poll(ctx, 10*time.Second, func(ctx context.Context) error {
			v, err := admitWith(ctx, hc, url+cs.path, cs.body)
			if err != nil {
				return err
			}
			return expect(v, cs.allowed, cs.want)
		})
		if err != nil {
			t.Fatalf("%s: %v", cs.name, err)
		}
	}

	// Readiness, probed every 10 ms until the process exits.
	var notReadyAt atomic.Int64 // UnixNano of the first failed probe
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		for {
			if !ready() && notReadyAt.Load() == 0 {
				notReadyAt.Store(time.Now().UnixNano())
			}
			select {
			case <-exited:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()

	// Load: one admission every 2 ms, spread over the workers, until the
	// server refuses connections for a second.
	var (
		answered, failed, wrong, refused atomic.Int64
		cutIdle                          atomic.Int64
		firstRefusedAt, sigtermAt        atomic.Int64
		mu                               sync.Mutex
		firstErrors                      []string
	)
	note := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		if len(firstErrors) < 5 {
			firstErrors = append(firstErrors, s)
		}
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				cs := cases[i%len(cases)]
				// A new connection counts as accepted once its TLS
				// handshake is done: the server does it only after
				// accepting the connection, and then reads one request.
				var handshook, reused atomic.Bool
				trace := &httptrace.ClientTrace{
					GotConn: func(info httptrace.GotConnInfo) { reused.Store(info.Reused) },
					TLSHandshakeDone: func(_ tls.ConnectionState, err error) {
						if err == nil {
							handshook.Store(true)
						}
					},
				}
				v, err := admitWith(httptrace.WithClientTrace(context.WithoutCancel(ctx), trace), hc, url+cs.path, cs.body)
				switch {
				case err != nil && reused.Load() && errors.Is(err, io.EOF):
					// A keep-alive connection left idle through the whole
					// shutdown delay, closed by the server as it stopped
					// just as this request went out on it: the server
					// never read the request. HTTP/1.1 cannot close an
					// idle connection without this race.
					cutIdle.Add(1)
				case err != nil && (isRefused(err) || !handshook.Load() && !reused.Load()):
					refused.Add(1)
					firstRefusedAt.CompareAndSwap(0, time.Now().UnixNano())
				case err != nil:
					failed.Add(1)
					note(fmt.Sprintf("%s after SIGTERM: %v", time.Since(time.Unix(0, sigtermAt.Load())).Round(time.Millisecond), err))
				case expect(v, cs.allowed, cs.want) != nil:
					wrong.Add(1)
					note(expect(v, cs.allowed, cs.want).Error())
				default:
					answered.Add(1)
				}
			}
		})
	}
	tick := time.NewTicker(time.Second / rate)
	start := time.Now()
	var signalled time.Time
	for i := 0; ; i++ {
		<-tick.C
		if signalled.IsZero() && time.Since(start) > 2*time.Second {
			signalled = time.Now()
			sigtermAt.Store(signalled.UnixNano())
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
		}
		if at := firstRefusedAt.Load(); at != 0 && time.Since(time.Unix(0, at)) > time.Second {
			break
		}
		if time.Since(start) > time.Minute {
			t.Error("the server still accepts connections a minute after SIGTERM")
			break
		}
		jobs <- i
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the webhook did not exit within 30 s of SIGTERM")
	}
	<-probeDone

	notReady := time.Unix(0, notReadyAt.Load())
	firstRefused := time.Unix(0, firstRefusedAt.Load())
	total := answered.Load() + failed.Load() + wrong.Load() + refused.Load() + cutIdle.Load()
	t.Logf("figures: %d admissions in %s (%.0f/s), %d answered, %d failed, %d wrong; not accepted once the server stopped: %d refused or cut before the TLS handshake, %d sent on a keep-alive connection idle since before SIGTERM as the server closed it",
		total, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), answered.Load(), failed.Load(), wrong.Load(), refused.Load(), cutIdle.Load())
	t.Logf("SIGTERM at 0: /readyz false after %s, connections refused after %s, exit %v",
		notReady.Sub(signalled).Round(time.Millisecond), firstRefused.Sub(signalled).Round(time.Millisecond), exitErr)
	if failed.Load() != 0 || wrong.Load() != 0 {
		t.Errorf("%d accepted admissions failed and %d got a wrong verdict; first: %v", failed.Load(), wrong.Load(), firstErrors)
	}
	if notReadyAt.Load() == 0 || firstRefusedAt.Load() == 0 || !notReady.Before(firstRefused) {
		t.Errorf("readiness did not turn false before connections were refused (not ready at %v, refused at %v)", notReady, firstRefused)
	}
	if exitErr != nil {
		t.Errorf("the webhook exited with %v; its output ends:\n%s", exitErr, tailOf(out.String(), 3000))
	}
}

func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

func tailOf(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
