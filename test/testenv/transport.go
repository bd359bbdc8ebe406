package testenv

import (
	"net/http"
	"strings"
	"sync"

	"k8s.io/client-go/rest"
)

// RequestLog records every request a client makes, for asserting that a
// component makes none (the webhook answers from its cache) and for saying
// which ones it made when it does.
type RequestLog struct {
	mu   sync.Mutex
	reqs []string
}

// Wrap returns a RoundTripper that records each request and forwards it.
func (l *RequestLog) Wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		l.mu.Lock()
		l.reqs = append(l.reqs, r.Method+" "+r.URL.RequestURI())
		l.mu.Unlock()
		return rt.RoundTrip(r)
	})
}

// Len is the number of requests so far.
func (l *RequestLog) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.reqs)
}

// Since returns the requests made after the first n ("METHOD /path?query").
func (l *RequestLog) Since(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n >= len(l.reqs) {
		return nil
	}
	return append([]string(nil), l.reqs[n:]...)
}

// ReadGate holds back a client's reads of resources — the lists and watches
// informers start with — until Open, so a test can look at a component
// before its caches sync. Discovery and writes pass.
type ReadGate struct {
	open chan struct{}
	once sync.Once
}

// NewReadGate returns a closed gate.
func NewReadGate() *ReadGate { return &ReadGate{open: make(chan struct{})} }

// Open lets held and future reads through.
func (g *ReadGate) Open() { g.once.Do(func() { close(g.open) }) }

// Wrap returns a RoundTripper that waits for Open before a resource read.
func (g *ReadGate) Wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.Method == http.MethodGet && isResourcePath(r.URL.Path) {
			select {
			case <-g.open:
			case <-r.Context().Done():
				return nil, r.Context().Err()
			}
		}
		return rt.RoundTrip(r)
	})
}

// isResourcePath tells /api/v1/namespaces or /apis/g/v/things (resources)
// from /api, /api/v1, /apis/g/v (discovery).
func isResourcePath(p string) bool {
	seg := strings.Split(strings.Trim(p, "/"), "/")
	switch seg[0] {
	case "api":
		return len(seg) >= 3
	case "apis":
		return len(seg) >= 4
	}
	return false
}

// WithTransport returns a copy of cfg whose transport is wrapped by wrap,
// after any wrapping cfg already has.
func WithTransport(cfg *rest.Config, wrap func(http.RoundTripper) http.RoundTripper) *rest.Config {
	out := rest.CopyConfig(cfg)
	out.Wrap(wrap)
	return out
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
