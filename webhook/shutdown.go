package webhook

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// connTracker exists because http.Server drops, unanswered, a request it
// finishes reading after Shutdown has begun, and no client resends the POST.
// So the server closes its listener, waits until no accepted connection is
// before its handler (bounded by ReadHeaderTimeout), then calls Shutdown.
type connTracker struct {
	mu      sync.Mutex
	pending map[net.Conn]bool // accepted, current request not yet in a handler
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
			// Active: a request being read; its handler clears it.
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

// waitHandled waits, at most limit, until no connection is before its handler.
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
