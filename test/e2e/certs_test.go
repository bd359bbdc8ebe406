package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestCertificateRotation replaces the serving certificate on disk, the way
// the kubelet updates a mounted Secret, while admissions flow through the
// API server and straight to the webhook on new connections: new TLS
// handshakes must get the new certificate, and no request may fail.
func TestCertificateRotation(t *testing.T) {
	ctx := testCtx(t)
	good, bad, refused := registryScenario(ctx, t)
	opts := metav1.CreateOptions{DryRun: dryRun}

	// Direct requests use a new connection, so a new handshake, every time.
	direct := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: env.wh.TLSConfig(), DisableKeepAlives: true,
	}}
	directBody, err := reviewBody(good)
	if err != nil {
		t.Fatal(err)
	}

	var (
		stop              = make(chan struct{})
		wg                sync.WaitGroup
		viaAPI, viaDirect atomic.Int64
		mu                sync.Mutex
		failures          []string
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 10 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p, want := good, ""
				if (w+i)%2 == 1 {
					p, want = bad, refused
				}
				if got := errString(createPod(ctx, p, opts)); got != want {
					fail("through the API server: got %q, want %q", got, want)
				}
				viaAPI.Add(1)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := direct.Post(env.wh.URL+"/validate-pods", "application/json", bytes.NewReader(directBody))
			if err != nil {
				fail("direct: %v", err)
				continue
			}
			out, err := readReview(resp)
			resp.Body.Close()
			if err != nil {
				fail("direct: %v", err)
			} else if !out.Allowed {
				fail("direct: refused %+v", out.Result)
			}
			viaDirect.Add(1)
		}
	}()

	// A failed wait ends the test early: stop the traffic then too.
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	})
	// flowing waits until both kinds of request have been answered some
	// more times, so that each rotation falls amid traffic.
	flowing := func(when string) {
		t.Helper()
		a, d := viaAPI.Load(), viaDirect.Load()
		eventually(t, "requests flowing "+when, func() error {
			if na, nd := viaAPI.Load()-a, viaDirect.Load()-d; na < 20 || nd < 20 {
				return fmt.Errorf("%d through the API server and %d direct, want 20 of each", na, nd)
			}
			return nil
		})
	}
	for round := 1; round <= 2; round++ {
		flowing(fmt.Sprintf("before rotation %d", round))
		before, err := env.wh.ServingCertificate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		serial, err := env.wh.RotateCertificate()
		if err != nil {
			t.Fatal(err)
		}
		if serial.Cmp(before.SerialNumber) == 0 {
			t.Fatal("the new certificate has the old serial number")
		}
		took := eventually(t, "new handshakes getting the new certificate", func() error {
			cert, err := env.wh.ServingCertificate(ctx)
			if err != nil {
				return err
			}
			if cert.SerialNumber.Cmp(serial) != 0 {
				return fmt.Errorf("still serial %s, want %s", cert.SerialNumber, serial)
			}
			return nil
		})
		t.Logf("rotation %d: serial %s -> %s, served to new handshakes after %s", round, before.SerialNumber, serial,
			took.Round(time.Millisecond))
	}
	flowing("after the last rotation")
	close(stop)
	wg.Wait()

	t.Logf("during the rotations: %d admissions through the API server, %d direct requests on new connections",
		viaAPI.Load(), viaDirect.Load())
	if len(failures) > 0 {
		t.Fatalf("requests failed during certificate rotation:\n%v", failures)
	}
	if viaAPI.Load() == 0 || viaDirect.Load() == 0 {
		t.Fatal("no requests flowed during the rotation")
	}
	// The API server, which trusts the CA and not the certificate, goes on
	// calling the webhook.
	if err := createPod(context.Background(), bad, opts); errString(err) != refused {
		t.Fatalf("after rotation: got %v, want %q", err, refused)
	}
}
