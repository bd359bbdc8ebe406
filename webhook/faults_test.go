package webhook

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
)

// deploymentMemoryLimit is the Deployment's memory limit
// (manifests/server/deployment.yaml).
const deploymentMemoryLimit = 512 << 20

// Slow-body and held-body (slowloris) attacks, against the server with
// its default limits: 200 connections that declare a 7 MiB body and send a
// byte a second, and 100 that send 7 MiB less one byte and hold the last,
// each reconnecting a second after the server drops it. Meanwhile
// legitimate reviews flow, every verdict checked: none fails, their p99 is
// logged beside the unloaded one, and the heap (the attackers' side
// included, as they run in this process) stays under the Deployment's limit.
func TestFaultSlowAndHeldBodies(t *testing.T) {
	if testing.Short() {
		t.Skip("a fault run of about 30 s; -short runs the unit tests only")
	}
	const (
		slowBodies = 200
		heldBodies = 100
		bodyLength = DefaultMaxRequestBytes - 1
		reconnect  = time.Second
		window     = 8 * time.Second
	)
	s := startHTTPS(t, Limits{}, "")
	body := reviewBody(t, podRequest(t, admissionv1.Create, "", goodPod(), nil))

	// legit sends reviews from two keep-alive clients for d and returns
	// the latencies, failing the test on any error or wrong verdict.
	legit := func(d time.Duration) []time.Duration {
		var mu sync.Mutex
		var lat []time.Duration
		var wg sync.WaitGroup
		deadline := time.Now().Add(d)
		for range 2 {
			wg.Go(func() {
				hc := s.client(s.tlsConfig())
				defer hc.CloseIdleConnections()
				var mine []time.Duration
				for time.Now().Before(deadline) {
					start := time.Now()
					res, err := hc.Post(s.url+PathPods, "application/json", bytes.NewReader(body))
					if err != nil {
						t.Errorf("legitimate review: %v", err)
						return
					}
					out, _ := io.ReadAll(res.Body)
					res.Body.Close()
					mine = append(mine, time.Since(start))
					if res.StatusCode != http.StatusOK || !bytes.Contains(out, []byte(`"allowed":true`)) {
						t.Errorf("legitimate review: HTTP %d %s", res.StatusCode, out)
						return
					}
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
		}
		wg.Wait()
		return lat
	}
	p99 := func(lat []time.Duration) time.Duration {
		slices.Sort(lat)
		return lat[len(lat)*99/100]
	}

	// Warm up (TLS sessions, pools), then the unloaded figure.
	legit(time.Second)
	runtime.GC()
	unloaded := legit(window)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var connects, refused, dropped atomic.Int64
	pause := func() bool {
		select {
		case <-stop:
			return false
		case <-time.After(reconnect):
			return true
		}
	}
	attack := func(send func(c *tls.Conn) error) {
		defer wg.Done()
		for {
			c, err := tls.Dial("tcp", s.addr, s.tlsConfig())
			if err == nil {
				connects.Add(1)
				done := make(chan struct{})
				go func() {
					defer close(done)
					res, err := http.ReadResponse(bufio.NewReader(c), nil)
					if err != nil {
						dropped.Add(1)
						return
					}
					res.Body.Close()
					if res.StatusCode == http.StatusTooManyRequests {
						refused.Add(1)
					} else {
						dropped.Add(1)
					}
				}()
				go func() {
					select {
					case <-stop:
						c.Close()
					case <-done:
					}
				}()
				_ = send(c)
				<-done
				c.Close()
			}
			if !pause() {
				return
			}
		}
	}
	filler := []byte(strings.Repeat(" ", 64<<10))
	headers := []byte(reviewHeaders(PathPods, bodyLength))
	for range slowBodies {
		wg.Add(1)
		go attack(func(c *tls.Conn) error {
			if _, err := c.Write(headers); err != nil {
				return err
			}
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return nil
				case <-tick.C:
					if _, err := c.Write([]byte("{")); err != nil {
						return err
					}
				}
			}
		})
	}
	for range heldBodies {
		wg.Add(1)
		go attack(func(c *tls.Conn) error {
			if _, err := c.Write(headers); err != nil {
				return err
			}
			for left := bodyLength - 1; left > 0; left -= len(filler) {
				if _, err := c.Write(filler[:min(left, len(filler))]); err != nil {
					return err
				}
			}
			<-stop // hold the last byte
			return nil
		})
	}

	var peakHeap atomic.Uint64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peakHeap.Load() {
					peakHeap.Store(ms.HeapInuse)
				}
			}
		}
	}()
	// Let the attack take hold: the body budget full of held bodies.
	waitFor(t, "the held bodies to fill the bytes in flight", func() bool {
		_, b := s.srv.limiter.inFlight()
		return b >= DefaultMaxBytesInFlight-DefaultMaxRequestBytes
	})
	attacked := legit(window)
	_, heldBytes := s.srv.limiter.inFlight()
	close(stop)
	wg.Wait()
	<-sampled

	base, under := p99(unloaded), p99(attacked)
	t.Logf("legitimate reviews: unloaded %d, p99 %s; under attack %d, p99 %s (%.2fx)",
		len(unloaded), base, len(attacked), under, float64(under)/float64(base))
	t.Logf("attack: %d connections made, %d refused with 429, %d dropped by timeouts or at the end; body bytes held at the end %d; peak heap in use %d MiB",
		connects.Load(), refused.Load(), dropped.Load(), heldBytes, peakHeap.Load()>>20)
	// The 2x target is a figure to read here, not to assert (the team's
	// rule: speed is measured, never asserted by a timed test, and two
	// shared cores make p99 noisy). What is asserted is that no review
	// reaches the API server's webhook timeout (5 s in the registration),
	// which a replica that queued behind the attackers would pass (before
	// the limits, a held connection waited for its 10 s read timeout); the
	// bound is that and not less because the test's own attackers share
	// the two cores, and a loaded CI machine more.
	if under >= 5*time.Second {
		t.Errorf("legitimate reviews' p99 under attack %s: the attack holds them up", under)
	}
	if peakHeap.Load() >= deploymentMemoryLimit {
		t.Errorf("peak heap in use %d MiB, not under the Deployment's limit of %d MiB", peakHeap.Load()>>20, deploymentMemoryLimit>>20)
	}
	if refused.Load() == 0 {
		t.Errorf("no held body was refused for the bytes in flight")
	}
}
