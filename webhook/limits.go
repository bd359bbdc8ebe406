package webhook

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// Defaults of Limits, also the serve command's flag defaults, sized to fit
// the Deployment's memory limit with room for the policy cache.
const (
	// Generous for a review, yet they bound how long a slow client holds a connection.
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 10 * time.Second
	// A client that does not read its response cannot hold the handler for ever.
	DefaultWriteTimeout = 15 * time.Second
	// Below the API server's idle timeout (90 s), so this side closes connections.
	DefaultIdleTimeout         = 60 * time.Second
	DefaultMaxConnections      = 1000
	DefaultMaxRequestsInFlight = 256
	DefaultMaxBytesInFlight    = 32 << 20

	maxHeaderBytes = 32 << 10 // the API server sends a few hundred bytes
	// freeBodyBytes of each body are counted in flight but never refused, so
	// small reviews are not shed because large bodies hold the budget.
	freeBodyBytes = 64 << 10
	// retryAfterSeconds: the API server retries a 429 after it, within the call's timeout.
	retryAfterSeconds = 1
)

// Limits bound what one replica takes from its clients, so that neither a
// slow client nor a flood can hold its connections, or its memory, for
// long. Zero fields take the defaults; a negative one turns that limit off.
type Limits struct {
	// ReadHeaderTimeout bounds the wait for a request's headers (and the
	// TLS handshake), ReadTimeout for the headers and the body together.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	// WriteTimeout bounds the time from the headers read to the response written.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that sends no request.
	IdleTimeout time.Duration
	// MaxConnections open at once; more wait in the kernel's accept queue.
	MaxConnections int
	// MaxRequestsInFlight are judged at once; more are refused with 429.
	MaxRequestsInFlight int
	// MaxBytesInFlight of request bodies are held at once, counted as they
	// arrive; more are refused with 429 (never the first 64 KiB of a body).
	MaxBytesInFlight int64
}

func (l Limits) withDefaults() Limits {
	l.ReadHeaderTimeout = cmp.Or(l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	l.ReadTimeout = cmp.Or(l.ReadTimeout, DefaultReadTimeout)
	l.WriteTimeout = cmp.Or(l.WriteTimeout, DefaultWriteTimeout)
	l.IdleTimeout = cmp.Or(l.IdleTimeout, DefaultIdleTimeout)
	l.MaxConnections = cmp.Or(l.MaxConnections, DefaultMaxConnections)
	l.MaxRequestsInFlight = cmp.Or(l.MaxRequestsInFlight, DefaultMaxRequestsInFlight)
	l.MaxBytesInFlight = cmp.Or(l.MaxBytesInFlight, DefaultMaxBytesInFlight)
	return l
}

// off maps a negative duration (limit off) to net/http's zero (none).
func off(d time.Duration) time.Duration { return max(d, 0) }

// errOverloaded is a request refused at one of the limits, answered with shed.
type errOverloaded struct {
	what       string
	unreadBody bool // refused before the body's end
}

func (e *errOverloaded) Error() string {
	return "policy-webhook: overloaded: " + e.what + "; retry shortly"
}

// limiter applies MaxRequestsInFlight and MaxBytesInFlight. A request takes
// a slot only once its whole body has arrived, so slow clients, bounded by
// connections and bytes instead, cannot crowd out the requests that are ready.
type limiter struct {
	limits  Limits
	metrics *Metrics
	slots   chan struct{} // a token per request being judged; nil is no limit
	bytes   atomic.Int64  // body bytes read by requests in flight
}

func newLimiter(l Limits, m *Metrics) *limiter {
	lim := &limiter{limits: l, metrics: m}
	if l.MaxRequestsInFlight > 0 {
		lim.slots = make(chan struct{}, l.MaxRequestsInFlight)
	}
	return lim
}

// wrap counts the request's body as it is read; what the limits refuse
// comes out of the body's Read as an errOverloaded.
func (l *limiter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A declared length no retry could ever get past is 413, not 429:
		// over the body limit, or over the whole budget of bytes in flight.
		if limit := l.maxBody(); r.ContentLength > limit {
			l.metrics.requestError(errTooLarge)
			tooLarge(w, r.ContentLength, limit)
			return
		}
		// Refuse a declared length that would pass the limit before reading
		// it, but reserve nothing for it: a client holds only what it sends.
		if max := l.limits.MaxBytesInFlight; max > 0 && r.ContentLength > freeBodyBytes &&
			l.bytes.Load()+r.ContentLength-freeBodyBytes > max {
			l.metrics.requestError(errShed)
			shed(w, errBytesInFlight(max))
			return
		}
		if r.Body != nil {
			b := &limitedBody{ReadCloser: r.Body, l: l}
			defer b.done()
			r.Body = b
		}
		next.ServeHTTP(w, r)
	})
}

// maxBody is the largest body that could ever be accepted.
func (l *limiter) maxBody() int64 {
	limit := int64(DefaultMaxRequestBytes)
	if m := l.limits.MaxBytesInFlight; m > 0 {
		// Alone, a body may hold the whole budget (take), and never less than the free bytes.
		limit = min(limit, max(m, freeBodyBytes))
	}
	return limit
}

// inFlight reports the requests being judged and the body bytes held.
func (l *limiter) inFlight() (requests int, bytes int64) {
	return len(l.slots), l.bytes.Load()
}

// take counts n more body bytes of a request holding held, unless that passes the limit.
func (l *limiter) take(n, held int64) bool {
	total := l.bytes.Add(n)
	if l.limits.MaxBytesInFlight <= 0 || held+n <= freeBodyBytes || total <= l.limits.MaxBytesInFlight {
		return true
	}
	l.bytes.Add(-n)
	return false
}

// limitedBody counts a body's bytes as they arrive and takes a slot at its
// end, until the request is done.
type limitedBody struct {
	io.ReadCloser
	l    *limiter
	held int64
	slot bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		if !b.l.take(int64(n), b.held) {
			return 0, errBytesInFlight(b.l.limits.MaxBytesInFlight)
		}
		b.held += int64(n)
	}
	if errors.Is(err, io.EOF) && !b.slot && b.l.slots != nil {
		select {
		case b.l.slots <- struct{}{}:
			b.slot = true
		default:
			return 0, &errOverloaded{what: strconv.Itoa(b.l.limits.MaxRequestsInFlight) + " requests being judged, the limit (--max-requests-in-flight)"}
		}
	}
	return n, err
}

func (b *limitedBody) done() {
	b.l.bytes.Add(-b.held)
	b.held = 0
	if b.slot {
		<-b.l.slots
		b.slot = false
	}
}

func errBytesInFlight(limit int64) *errOverloaded {
	return &errOverloaded{what: fmt.Sprintf("request bodies in flight would pass %d bytes, the limit (--max-bytes-in-flight)", limit), unreadBody: true}
}

// shed answers a request refused for load: 429 with Retry-After, which the
// API server's client honours by retrying.
func shed(w http.ResponseWriter, o *errOverloaded) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	// net/http would otherwise read the rest of the body before answering;
	// with the body read, the connection stays, sparing a retry a handshake.
	if o.unreadBody {
		w.Header().Set("Connection", "close")
	}
	http.Error(w, o.Error(), http.StatusTooManyRequests)
}

// tooLarge answers a request whose declared body is over what could ever
// be accepted: 413, and the connection closed rather than the body read.
func tooLarge(w http.ResponseWriter, declared, limit int64) {
	w.Header().Set("Connection", "close")
	http.Error(w, fmt.Sprintf("policy-webhook: the request body of %d bytes is larger than the limit of %d bytes", declared, limit), http.StatusRequestEntityTooLarge)
}
