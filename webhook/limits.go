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

// Defaults of Limits, also the serve command's flag defaults. They fit the
// Deployment's 512 MiB memory limit with room for the policy cache: at most
// 32 MiB of request bodies buffered (their buffers up to twice that), 256
// handlers and 1,000 connections of a few tens of KiB each.
const (
	// A whole review reaches the webhook in milliseconds, even at 7 MiB
	// inside a cluster: seconds are generous, and bound how long a client
	// that sends slowly, or not at all, holds a connection.
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 10 * time.Second
	// Covers reading the body, judging and writing the response: a reader
	// that does not take its response cannot hold the handler for ever.
	DefaultWriteTimeout = 15 * time.Second
	// Shorter than the API server's own idle timeout for webhook
	// connections (90 s), so the server is the side that closes them.
	DefaultIdleTimeout         = 60 * time.Second
	DefaultMaxConnections      = 1000
	DefaultMaxRequestsInFlight = 256
	DefaultMaxBytesInFlight    = 32 << 20

	// maxHeaderBytes bounds a request's headers: the API server sends a
	// few hundred bytes of them.
	maxHeaderBytes = 32 << 10
	// freeBodyBytes of each body are counted in the bytes in flight but
	// never refused for them: a review of a few KiB (nearly all of them)
	// is then never shed because large bodies hold the budget. What it
	// lets past the budget is bounded by MaxRequestsInFlight × 64 KiB.
	freeBodyBytes = 64 << 10
	// retryAfterSeconds is sent with every refusal for load: the API
	// server's client retries a 429 after that delay, within the webhook
	// call's timeout.
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
	// WriteTimeout bounds the time from the headers read to the response
	// written.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that sends no request.
	IdleTimeout time.Duration
	// MaxConnections open at once; further connections wait in the
	// kernel's accept queue until one closes.
	MaxConnections int
	// MaxRequestsInFlight are judged at once, from the body received to
	// the response written; more are refused with 429 and Retry-After.
	MaxRequestsInFlight int
	// MaxBytesInFlight of request bodies are held at once, counted as
	// they arrive; a body that would pass the limit is refused with 429
	// and Retry-After (the first 64 KiB of each body never are).
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

// errOverloaded is a request refused because the replica is at one of
// its limits; it is answered 429 with Retry-After.
type errOverloaded struct {
	what       string
	unreadBody bool // refused before the body's end
}

func (e *errOverloaded) Error() string {
	return "policy-webhook: overloaded: " + e.what + "; retry shortly"
}

// limiter applies MaxRequestsInFlight and MaxBytesInFlight around the
// webhook's handlers. A request takes a slot of MaxRequestsInFlight only
// once its whole body has arrived, for the decoding and judging that
// follow: a client still sending holds a connection (bounded by
// MaxConnections and ReadTimeout) and its bytes (MaxBytesInFlight), never
// a slot, so slow clients cannot crowd out the requests that are ready.
type limiter struct {
	limits  Limits
	metrics *Metrics
	// slots holds a token per request being judged; nil is no limit.
	slots chan struct{}
	// bytes are the body bytes read by requests in flight.
	bytes atomic.Int64
}

func newLimiter(l Limits, m *Metrics) *limiter {
	lim := &limiter{limits: l, metrics: m}
	if l.MaxRequestsInFlight > 0 {
		lim.slots = make(chan struct{}, l.MaxRequestsInFlight)
	}
	return lim
}

// wrap counts the request's body as it is read; what the limits refuse
// comes out of the body's Read as an errOverloaded, which the review
// handler answers with shed.
func (l *limiter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A body that, arriving in full, would pass the bytes in flight
		// of the moment is refused before a byte of it is read: cheaper
		// than reading and refusing it midway. Nothing is reserved for
		// the declared length: a client declaring more than it sends
		// holds only what it sends.
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

// inFlight reports the requests being judged and the body bytes held, for
// the gauges.
func (l *limiter) inFlight() (requests int, bytes int64) {
	return len(l.slots), l.bytes.Load()
}

// take counts n more body bytes of a request already holding held, or
// refuses them if that passes MaxBytesInFlight.
func (l *limiter) take(n, held int64) bool {
	total := l.bytes.Add(n)
	if l.limits.MaxBytesInFlight <= 0 || held+n <= freeBodyBytes || total <= l.limits.MaxBytesInFlight {
		return true
	}
	l.bytes.Add(-n)
	return false
}

// limitedBody counts a body's bytes against MaxBytesInFlight as they
// arrive and takes a slot of MaxRequestsInFlight at its end, until the
// request is done.
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
// API server's client honours by retrying (the 503 of an unsynced cache is
// a verdict instead, in the review).
func shed(w http.ResponseWriter, o *errOverloaded) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	// With the body not read to its end, close the connection: net/http
	// would otherwise read what is left (up to 256 KiB, for as long as the
	// read timeout allows) before answering. A request refused with its
	// body read keeps the connection, so a client retrying under load
	// needs no new handshake.
	if o.unreadBody {
		w.Header().Set("Connection", "close")
	}
	http.Error(w, o.Error(), http.StatusTooManyRequests)
}
