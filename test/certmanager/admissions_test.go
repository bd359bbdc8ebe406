package certmanager

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/policy-webhook/policy-webhook/hack/devenv"
)

// Images on either side of the test policy (allowedRegistries:
// [registry.example.com/]).
const (
	allowedImage = "registry.example.com/team-a/app:1.0"
	deniedImage  = "docker.io/library/nginx:1.27"
)

// testPod is a one-container Pod running image.
func testPod(namespace, name, image string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
}

// createPod asks the API server to create a Pod, for real or as a
// server-side dry run (which admission webhooks with sideEffects None judge
// like any other request).
func createPod(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, dryRun bool) error {
	opts := metav1.CreateOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err := cs.CoreV1().Pods(pod.Namespace).Create(ctx, pod, opts)
	return err
}

// denial is what a user sees when the webhook refuses a Pod for the test
// policy: the API server names the webhook, the webhook names the policy,
// the field and the offending image.
func denial(policySource string) []string {
	return []string{
		`admission webhook "pods.policy-webhook.policy.example.com" denied the request`,
		policySource,
		"spec.containers[0].image",
		deniedImage,
	}
}

// checkDenied returns nil if err is the webhook's denial of the test Pod.
func checkDenied(err error, want []string) error {
	if err == nil {
		return errors.New("admitted, want denied")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			return fmt.Errorf("denied with %q, want a message with %q", err.Error(), w)
		}
	}
	return nil
}

// admissionLoop sends Pod admissions through the API server, allowed and
// denied ones in turn, from a few goroutines, until stopped, and records
// every answer that is not the expected one: a TLS failure between the
// API server and the webhook shows up here as "failed calling webhook".
type admissionLoop struct {
	allowed, denied atomic.Int64
	mu              sync.Mutex
	failures        []string
	cancel          context.CancelFunc
	wg              sync.WaitGroup
}

func startAdmissions(ctx context.Context, cs kubernetes.Interface, namespace string, wantDenial []string) *admissionLoop {
	ctx, cancel := context.WithCancel(ctx)
	l := &admissionLoop{cancel: cancel}
	const workers = 3
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			ok := testPod(namespace, fmt.Sprintf("loop-allowed-%d", w), allowedImage)
			bad := testPod(namespace, fmt.Sprintf("loop-denied-%d", w), deniedImage)
			for i := 0; ctx.Err() == nil; i++ {
				start := time.Now()
				if i%2 == 0 {
					err := createPod(ctx, cs, ok, true)
					switch {
					case ctx.Err() != nil:
					case err != nil:
						l.fail(start, fmt.Errorf("allowed Pod: %w", err))
					default:
						l.allowed.Add(1)
					}
					continue
				}
				err := createPod(ctx, cs, bad, true)
				switch {
				case ctx.Err() != nil:
				case checkDenied(err, wantDenial) != nil:
					l.fail(start, fmt.Errorf("denied Pod: %w", checkDenied(err, wantDenial)))
				default:
					l.denied.Add(1)
				}
			}
		}()
	}
	return l
}

func (l *admissionLoop) fail(at time.Time, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures = append(l.failures, at.Format("15:04:05.000")+" "+err.Error())
}

// total is the number of admissions answered as expected so far.
func (l *admissionLoop) total() int64 { return l.allowed.Load() + l.denied.Load() }

// failed returns the unexpected answers so far.
func (l *admissionLoop) failed() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.failures...)
}

// stop stops the loop and waits for requests in flight.
func (l *admissionLoop) stop() {
	l.cancel()
	l.wg.Wait()
}

// waitAdmissions waits until at least n more admissions than at mark have
// been answered as expected, so that every step of a renewal is shown to
// have had requests going through it.
func (l *admissionLoop) waitAdmissions(t *testing.T, mark, n int64, during string) {
	t.Helper()
	err := devenv.Poll(t.Context(), 20*time.Second, func(context.Context) error {
		if got := l.total() - mark; got < n {
			return fmt.Errorf("%d admissions, want %d", got, n)
		}
		return nil
	})
	if err != nil {
		f := l.failed()
		t.Fatalf("admissions stalled %s: %v; %d failures, the first: %q", during, err, len(f), f[:min(len(f), 5)])
	}
}

// servedSerial is the serial number of the certificate the webhook serves
// to a new connection. It only reads the certificate, it does not trust it:
// trust is the API server's to decide, through the caBundle.
func servedSerial(ctx context.Context, addr string) (*big.Int, error) {
	d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // reading, not trusting
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to the webhook at %s: %w", addr, err)
	}
	defer conn.Close()
	state := conn.(*tls.Conn).ConnectionState()
	if len(state.PeerCertificates) == 0 {
		return nil, fmt.Errorf("the webhook at %s sent no certificate", addr)
	}
	return state.PeerCertificates[0].SerialNumber, nil
}
