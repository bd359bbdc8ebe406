// Package inprocess serves the webhook in the caller's own process, as
// app.Run on 127.0.0.1 with a serving certificate from a throwaway CA,
// for hack/devcluster and the end-to-end tests (through test/inprocess). It
// is apart from devenv so that the tests of cmd/policy-webhook/app can use
// devenv.
package inprocess

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"

	"github.com/policy-webhook/policy-webhook/certs"
	"github.com/policy-webhook/policy-webhook/cmd/policy-webhook/app"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/webhook"
)

// certValidity is long enough for any local session and short enough that a
// leaked throwaway key is worthless soon. The CA outlives every certificate
// it issues, rotations included.
const (
	certValidity = 24 * time.Hour
	caValidity   = 7 * 24 * time.Hour
)

// Options configure Start.
type Options struct {
	// RestConfig is the webhook's connection to the API server. Tests wrap
	// its transport to count or hold back the webhook's requests.
	RestConfig *rest.Config
	// PolicyNamespace defaults to webhook.DefaultPolicyNamespace.
	PolicyNamespace string
	// FailOpenBeforeSync admits requests before the informers have synced.
	FailOpenBeforeSync bool
	// Log receives the webhook's logs.
	Log logr.Logger
	// ClientCAFile and MetricsSecure are passed to app.Options.
	ClientCAFile  string
	MetricsSecure bool
	// AuditInterval turns the background audit on (app.Options); 0: off.
	AuditInterval time.Duration
	// MaxCacheStaleness is passed to app.Options (0: its default).
	MaxCacheStaleness time.Duration
	// Username and LedgerCleanupInterval are passed to app.Options.
	Username              string
	LedgerCleanupInterval time.Duration
	// LeaderElection and the Lease timings are passed to app.Options (zero
	// timings: its defaults). Off, the webhook writes as if it led.
	LeaderElection                            bool
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// MetricsRegistry, when set, takes the webhook's metrics instead of
	// controller-runtime's registry: a second webhook in the same process
	// needs its own.
	MetricsRegistry prometheus.Registerer
}

// Webhook is the webhook served in process by app.Run, on 127.0.0.1, with
// a serving certificate from its own throwaway CA written the way the kubelet
// writes a Secret volume.
type Webhook struct {
	// URL is the base of the webhook paths: https://127.0.0.1:<Port>.
	URL string
	// Port is the TLS port of the webhook server.
	Port int
	// HealthAddr and MetricsAddr are the host:port of the probe and metrics servers.
	HealthAddr  string
	MetricsAddr string
	// CertDir holds tls.crt, tls.key and ca.crt behind a ..data symlink.
	CertDir string
	// CA signed the serving certificate; its PEM is the caBundle to register.
	CA *certs.CA
	// PolicyNamespace is the namespace whose policy ConfigMaps apply cluster-wide.
	PolicyNamespace string

	tmpDir    string
	cancel    context.CancelFunc
	ready     chan struct{} // closed by app.Options.OnReady
	readyOnce sync.Once
	done      chan struct{}
	err       error // set before done is closed
	probe     *http.Client
}

// Start makes a CA and a serving certificate for 127.0.0.1 and
// localhost, and runs app.Run in a goroutine until Stop. It returns at
// once; WaitReady waits for the informers to sync.
func Start(ctx context.Context, opts Options) (*Webhook, error) {
	if opts.RestConfig == nil {
		return nil, errors.New("starting the webhook: no RestConfig")
	}
	if opts.PolicyNamespace == "" {
		opts.PolicyNamespace = webhook.DefaultPolicyNamespace
	}
	tmp, err := os.MkdirTemp("", "policy-webhook-certs-")
	if err != nil {
		return nil, fmt.Errorf("creating a directory for the serving certificate: %w", err)
	}
	w := &Webhook{
		CertDir:         filepath.Join(tmp, "serving-cert"),
		PolicyNamespace: opts.PolicyNamespace,
		tmpDir:          tmp,
		ready:           make(chan struct{}),
		done:            make(chan struct{}),
		probe:           &http.Client{Timeout: 2 * time.Second},
	}
	fail := func(err error) (*Webhook, error) {
		_ = os.RemoveAll(tmp)
		return nil, err
	}
	if w.CA, err = certs.NewCA("policy-webhook local CA", caValidity); err != nil {
		return fail(fmt.Errorf("making the throwaway CA: %w", err))
	}
	if _, err := w.RotateCertificate(); err != nil {
		return fail(err)
	}
	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = devenv.FreePort(); err != nil {
			return fail(err)
		}
	}
	w.Port = ports[0]
	w.URL = "https://127.0.0.1:" + strconv.Itoa(w.Port)
	w.HealthAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
	w.MetricsAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2]))

	runCtx, cancel := context.WithCancel(ctx)
	w.cancel = cancel
	go func() {
		defer close(w.done)
		w.err = app.Run(runCtx, app.Options{
			RestConfig:             opts.RestConfig,
			PolicyNamespace:        opts.PolicyNamespace,
			Host:                   "127.0.0.1",
			Port:                   w.Port,
			CertDir:                w.CertDir,
			MetricsBindAddress:     w.MetricsAddr,
			HealthProbeBindAddress: w.HealthAddr,
			FailOpenBeforeSync:     opts.FailOpenBeforeSync,
			ClientCAFile:           opts.ClientCAFile,
			MetricsSecure:          opts.MetricsSecure,
			AuditInterval:          opts.AuditInterval,
			// Each replica in the process its own name (its heartbeat
			// Lease, its status.replicas entry), not the host's.
			ReplicaName:       "inprocess-" + strconv.Itoa(w.Port),
			MetricsRegistry:   opts.MetricsRegistry,
			MaxCacheStaleness: opts.MaxCacheStaleness,
			LeaderElection:    opts.LeaderElection,
			LeaseDuration:     opts.LeaseDuration,
			RenewDeadline:     opts.RenewDeadline,
			RetryPeriod:       opts.RetryPeriod,
			Log:               opts.Log,

			Username:              opts.Username,
			LedgerCleanupInterval: opts.LedgerCleanupInterval,
			OnReady:               func() { w.readyOnce.Do(func() { close(w.ready) }) },
		})
	}()
	return w, nil
}

// RotateCertificate issues a new serving certificate from the same CA and
// swaps it in the way the kubelet updates a Secret volume, so the API
// server, which trusts the CA, keeps trusting the webhook. It returns the
// serial number of the new certificate.
func (w *Webhook) RotateCertificate() (*big.Int, error) {
	certPEM, keyPEM, err := w.CA.Issue([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, certValidity)
	if err != nil {
		return nil, fmt.Errorf("issuing a serving certificate: %w", err)
	}
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("reading back the serving certificate: %w", err)
	}
	err = certs.WriteSecretVolume(w.CertDir, map[string][]byte{
		certs.CertFile: certPEM,
		certs.KeyFile:  keyPEM,
		certs.CAFile:   w.CA.CertPEM(),
	})
	if err != nil {
		return nil, fmt.Errorf("writing the serving certificate to %s: %w", w.CertDir, err)
	}
	return cert.SerialNumber, nil
}

// Ready reports whether /readyz answers 200. An error means the probe server
// did not answer at all.
func (w *Webhook) Ready(ctx context.Context) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+w.HealthAddr+"/readyz", nil)
	if err != nil {
		return false, fmt.Errorf("building the readyz request: %w", err)
	}
	resp, err := w.probe.Do(req)
	if err != nil {
		return false, fmt.Errorf("probing readyz: %w", err)
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

// WaitReady waits until the webhook reports itself ready (informers synced,
// certificate loaded), then confirms it on /readyz as a kubelet would. It
// waits for the OnReady callback rather than polling /readyz, which would
// log every failed check until then.
func (w *Webhook) WaitReady(ctx context.Context) error {
	select {
	case <-w.ready:
	case <-w.done:
		return fmt.Errorf("the webhook stopped before it was ready: %w", w.err)
	case <-ctx.Done():
		return fmt.Errorf("waiting for the webhook to be ready: %w", ctx.Err())
	}
	err := devenv.Poll(ctx, time.Hour, func(ctx context.Context) error {
		select {
		case <-w.done:
			return devenv.Final(fmt.Errorf("the webhook stopped before it was ready: %w", w.err))
		default:
		}
		ok, err := w.Ready(ctx)
		if err == nil && !ok {
			err = errors.New("it answers not ready after OnReady")
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("waiting for /readyz: %w", err)
	}
	return nil
}

// Done is closed when app.Run has returned.
func (w *Webhook) Done() <-chan struct{} { return w.done }

// Err is what app.Run returned; valid once Done is closed.
func (w *Webhook) Err() error { return w.err }

// Stop cancels app.Run, waits for it to return, and removes the
// certificate directory. It returns Run's error.
func (w *Webhook) Stop() error {
	w.cancel()
	<-w.done
	if err := os.RemoveAll(w.tmpDir); err != nil {
		return fmt.Errorf("removing %s: %w", w.tmpDir, err)
	}
	if w.err != nil {
		return fmt.Errorf("running the webhook: %w", w.err)
	}
	return nil
}

// TLSConfig trusts only the webhook's CA, as the API server does.
func (w *Webhook) TLSConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(w.CA.CertPEM())
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// HTTPClient talks to the webhook directly over TLS, trusting its CA.
func (w *Webhook) HTTPClient() *http.Client {
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: w.TLSConfig(), ForceAttemptHTTP2: true},
	}
}

// ServingCertificate dials the webhook with a fresh TLS handshake and
// returns the certificate it presented.
func (w *Webhook) ServingCertificate(ctx context.Context) (*x509.Certificate, error) {
	d := tls.Dialer{Config: w.TLSConfig()}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(w.Port)))
	if err != nil {
		return nil, fmt.Errorf("dialing the webhook over TLS: %w", err)
	}
	defer conn.Close()
	peer := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(peer) == 0 {
		return nil, errors.New("the webhook presented no certificate")
	}
	return peer[0], nil
}

func parseCertPEM(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no CERTIFICATE block")
	}
	return x509.ParseCertificate(block.Bytes)
}
