package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/netutil"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
)

// Server is the webhook's HTTPS server, behind controller-runtime's webhook
// server interface, whose own http.Server cannot be configured. It adds the
// Limits, load shedding with 429 and optional client certificates.
type Server struct {
	host string
	port int
	// tls is every connection's configuration; with clientCAs, a template.
	tls *tls.Config
	// clientCAs, reread when the file changes, or nil: no client certificates.
	clientCAs *dynamiccertificates.DynamicFileCAContent
	http2     bool
	limits    Limits
	limiter   *limiter
	mux       *http.ServeMux
	log       logr.Logger

	started atomic.Bool
	// draining is set once shutdown has begun: see Drain.
	draining atomic.Bool
}

var _ crwebhook.Server = (*Server)(nil)

// Drain has every response from now on close its connection, so that when
// the server stops no client sends on a keep-alive connection as it closes:
// that POST would fail with EOF, and no client sends it again.
func (s *Server) Drain() { s.draining.Store(true) }

func (s *Server) closeWhenDraining(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}

// shutdownTimeout bounds the wait for requests in flight; the manager's
// shorter GracefulShutdownTimeout applies in practice.
const shutdownTimeout = time.Minute

// ServerOptions configure NewServer.
type ServerOptions struct {
	// Host is the address to listen on, "" every address; Port its port.
	Host string
	Port int
	// GetCertificate returns the serving certificate of the moment.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// ClientCAFile, if set, is a PEM file of CAs: clients without a
	// certificate they signed are refused at the handshake. Reread on change.
	ClientCAFile string
	// EnableHTTP2 offers h2 beside HTTP/1.1.
	EnableHTTP2 bool
	// Limits of the server; zero fields take the defaults.
	Limits Limits
	// Metrics count the requests shed; Registerer takes the in-flight gauges.
	Metrics    *Metrics
	Registerer prometheus.Registerer
	Log        logr.Logger
}

// NewServer builds the server of o and registers its gauges.
func NewServer(o ServerOptions) (*Server, error) {
	cfg := &tls.Config{}
	TLSOption(o.GetCertificate, o.EnableHTTP2)(cfg)
	s := &Server{
		host: o.Host, port: o.Port, tls: cfg, http2: o.EnableHTTP2, limits: o.Limits.withDefaults(),
		mux: http.NewServeMux(), log: o.Log,
	}
	s.limiter = newLimiter(s.limits, o.Metrics)
	if o.ClientCAFile != "" {
		var err error
		if s.clientCAs, err = dynamiccertificates.NewDynamicCAContentFromFile("client-ca", o.ClientCAFile); err != nil {
			return nil, fmt.Errorf("reading the client CA file: %w", err)
		}
	}
	for _, g := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "policy_webhook_requests_in_flight",
			Help: "Webhook requests being judged (body received, response not yet written); at --max-requests-in-flight more are refused with 429.",
		}, func() float64 { n, _ := s.limiter.inFlight(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "policy_webhook_request_bytes_in_flight",
			Help: "Request body bytes held by requests being served; at --max-bytes-in-flight more are refused with 429.",
		}, func() float64 { _, b := s.limiter.inFlight(); return float64(b) }),
	} {
		if err := o.Registerer.Register(g); err != nil {
			return nil, fmt.Errorf("registering the webhook server's metrics: %w", err)
		}
	}
	return s, nil
}

func (*Server) NeedLeaderElection() bool { return false }

func (s *Server) Register(path string, h http.Handler) { s.mux.Handle(path, h) }

func (s *Server) WebhookMux() *http.ServeMux { return s.mux }

func (s *Server) addr() string { return net.JoinHostPort(s.host, strconv.Itoa(s.port)) }

// tlsConfig is the listener's configuration. With client CAs, every
// handshake gets the CAs of the moment, so a renewed file needs no restart.
func (s *Server) tlsConfig() *tls.Config {
	if s.clientCAs == nil {
		return s.tls
	}
	cfg := s.tls.Clone()
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := cfg.Clone() // its GetConfigForClient is not called again
		v, _ := s.clientCAs.VerifyOptions()
		c.ClientCAs = v.Roots
		return c, nil
	}
	return cfg
}

func (s *Server) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.addr())
	if err != nil {
		return fmt.Errorf("listening on %s: %w", s.addr(), err)
	}
	if s.limits.MaxConnections > 0 {
		ln = netutil.LimitListener(ln, s.limits.MaxConnections)
	}
	if s.clientCAs != nil {
		go s.clientCAs.Run(ctx, 1)
	}
	l := s.limits
	srv := &http.Server{
		Handler:           s.closeWhenDraining(s.limiter.wrap(s.mux)),
		ReadHeaderTimeout: off(l.ReadHeaderTimeout),
		ReadTimeout:       off(l.ReadTimeout),
		WriteTimeout:      off(l.WriteTimeout),
		IdleTimeout:       off(l.IdleTimeout),
		MaxHeaderBytes:    maxHeaderBytes,
		// Refused handshakes and timed-out clients are expected: debug level.
		ErrorLog: log.New(logWriter{s.log.V(1)}, "", 0),
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetHTTP2(s.http2)
	conns := newConnTracker()
	conns.install(srv)
	tlsLn := &onceCloseListener{Listener: tls.NewListener(ln, s.tlsConfig())}

	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		s.log.Info("Stopping the webhook server; requests in flight finish", "timeout", shutdownTimeout)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		// See connTracker: no request accepted is dropped.
		_ = tlsLn.Close()
		conns.waitHandled(sctx, max(l.ReadHeaderTimeout, time.Second))
		if err := srv.Shutdown(sctx); err != nil {
			s.log.Error(err, "Stopping the webhook server")
		}
	}()

	s.log.Info("Serving webhooks", "address", s.addr(), "clientCertificates", s.clientCAs != nil,
		"readHeaderTimeout", l.ReadHeaderTimeout.String(), "readTimeout", l.ReadTimeout.String(),
		"writeTimeout", l.WriteTimeout.String(), "idleTimeout", l.IdleTimeout.String(),
		"maxConnections", l.MaxConnections, "maxRequestsInFlight", l.MaxRequestsInFlight, "maxBytesInFlight", l.MaxBytesInFlight)
	s.started.Store(true)
	// Closed before Shutdown, the listener makes Serve return net.ErrClosed.
	if err := srv.Serve(tlsLn); err != nil && !errors.Is(err, http.ErrServerClosed) && (ctx.Err() == nil || !errors.Is(err, net.ErrClosed)) {
		return fmt.Errorf("serving webhooks on %s: %w", s.addr(), err)
	}
	<-done
	return nil
}

// StartedChecker reports whether the server accepts connections: a TLS
// handshake, or a TCP connection when client certificates are required.
func (s *Server) StartedChecker() healthz.Checker {
	cfg := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // checks that TLS is served, not whom
	return func(*http.Request) error {
		if !s.started.Load() {
			return errors.New("the webhook server has not started yet")
		}
		d := &net.Dialer{Timeout: 10 * time.Second}
		var conn net.Conn
		var err error
		if s.clientCAs != nil {
			conn, err = d.Dial("tcp", s.addr())
		} else {
			conn, err = tls.DialWithDialer(d, "tcp", s.addr(), cfg)
		}
		if err != nil {
			return fmt.Errorf("the webhook server is not reachable: %w", err)
		}
		return conn.Close()
	}
}

// logWriter passes net/http's error log lines to a logr.Logger.
type logWriter struct{ log logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Info(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TLSOption adjusts a TLS configuration to the webhook's: the certificate
// from getCertificate, TLS 1.2 at least, AEAD suites only, and the protocols
// always set, so that the flag and not some default says what is served.
func TLSOption(getCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error), enableHTTP2 bool) func(*tls.Config) {
	return func(c *tls.Config) {
		c.GetCertificate = getCertificate
		c.MinVersion = tls.VersionTLS12
		c.CipherSuites = aeadSuites
		c.NextProtos = []string{"http/1.1"}
		if enableHTTP2 {
			c.NextProtos = []string{"h2", "http/1.1"}
		}
	}
}

// aeadSuites are the TLS 1.2 suites served: no CBC, which Go's defaults
// still include. TLS 1.3's suites are all AEAD.
var aeadSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}
