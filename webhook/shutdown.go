package webhook

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Go's http.Server drops, without an answer, a request it finishes reading
// after Shutdown has begun, even on a connection it accepted before: the
// client sees EOF, and neither Go's client nor the API server's sends a
// POST again. Under load some connection is always between its accept and
// its handler, so stopping with Shutdown alone fails a few accepted
// admissions (2 to 9 at 450/s in test/faults' SIGTERM run). The server
// therefore stops in two steps: it closes its listener, waits until no
// connection it accepted is still before its handler (its TLS handshake
// or request headers, both bounded by ReadHeaderTimeout), and only then
// calls Shutdown, which lets the handlers running finish.
type connTracker struct {
	mu sync.Mutex
	// pending are connections accepted whose current request has not
	// reached its handler: new ones, and those reading a request.
	pending map[net.Conn]bool
}

type connKey struct{}

func newConnTracker() *connTracker { return &connTracker{pending: map[net.Conn]bool{}} }

// install hooks the tracker into srv, and wraps its handler.
func (t *connTracker) install(srv *http.Server) {
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, c)
	}
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		t.mu.Lock()
		defer t.mu.Unlock()
		switch st {
		case http.StateNew, http.StateActive:
			// Active: bytes of a request read, its handler not yet
			// started (the handler clears it).
			t.pending[c] = true
		default:
			delete(t.pending, c)
		}
	}
	h := srv.Handler
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
			t.mu.Lock()
			delete(t.pending, c)
			t.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
}

// waitHandled waits, at most limit, until every connection accepted has
// its request in a handler or has none.
func (t *connTracker) waitHandled(ctx context.Context, limit time.Duration) {
	_ = wait.PollUntilContextTimeout(ctx, 2*time.Millisecond, limit, true, func(context.Context) (bool, error) {
		t.mu.Lock()
		defer t.mu.Unlock()
		return len(t.pending) == 0, nil
	})
}

// onceCloseListener closes its listener once: the server closes it before
// Shutdown, which closes it again.
type onceCloseListener struct {
	net.Listener
	once sync.Once
	err  error
}

func (l *onceCloseListener) Close() error {
	l.once.Do(func() { l.err = l.Listener.Close() })
	return l.err
}
