package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/policy-webhook/policy-webhook/test/inprocess"
	"github.com/policy-webhook/policy-webhook/test/testenv"
)

// TestReadinessFollowsSync starts a second webhook whose reads of the API
// server are held back, so its informers cannot sync: it must answer
// /readyz with not ready and refuse admissions with a message that says why,
// then become ready once the reads go through.
func TestReadinessFollowsSync(t *testing.T) {
	ctx := testCtx(t)
	gate := testenv.NewReadGate()
	wh, err := inprocess.Start(ctx, inprocess.Options{
		RestConfig: testenv.WithTransport(env.cp.Config, gate.Wrap),
		Log:        env.log.WithName("held-webhook"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		gate.Open()
		if err := wh.Stop(); err != nil {
			t.Errorf("stopping the second webhook: %v", err)
		}
	})

	// Wait for the probe server to answer, then watch it stay not ready.
	eventually(t, "the probe server answering", func() error {
		_, err := wh.Ready(ctx)
		return err
	})
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		ready, err := wh.Ready(ctx)
		if err != nil {
			t.Fatalf("probing readyz before sync: %v", err)
		}
		if ready {
			t.Fatal("ready before its informers could sync")
		}
	}
	ns := newNamespace(t, nil)
	p := pod(ns, "web", nil, "nginx:1.27")
	resp := review(t, wh, p)
	if resp.Allowed || resp.Result == nil || !strings.Contains(resp.Result.Message, "not synced") {
		t.Fatalf("before sync: allowed=%v result=%+v; want a refusal saying the cache has not synced", resp.Allowed, resp.Result)
	}
	t.Logf("before sync: refused with %d %q", resp.Result.Code, resp.Result.Message)

	gate.Open()
	opened := time.Now()
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := wh.WaitReady(waitCtx); err != nil {
		t.Fatal(err)
	}
	t.Logf("ready %s after the reads were let through", time.Since(opened).Round(time.Millisecond))
	if resp := review(t, wh, p); !resp.Allowed {
		t.Fatalf("after sync: refused with %+v", resp.Result)
	}
}

// review sends one Pod CREATE AdmissionReview straight to a webhook's
// /validate-pods, as the API server would.
func review(t *testing.T, wh *inprocess.Webhook, p *corev1.Pod) *admissionv1.AdmissionResponse {
	t.Helper()
	body, err := reviewBody(p)
	if err != nil {
		t.Fatal(err)
	}
	httpResp, err := wh.HTTPClient().Post(wh.URL+"/validate-pods", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("posting an AdmissionReview: %v", err)
	}
	defer httpResp.Body.Close()
	out, err := readReview(httpResp)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func reviewBody(p *corev1.Pod) ([]byte, error) {
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encoding the Pod: %w", err)
	}
	ar := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID("e2e-" + p.Name),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: p.Namespace,
			Name:      p.Name,
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: raw},
		},
	}
	return json.Marshal(&ar)
}

func readReview(r *http.Response) (*admissionv1.AdmissionResponse, error) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, fmt.Errorf("reading the AdmissionReview response: %w", err)
	}
	if r.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d: %s", r.StatusCode, data)
	}
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(data, &ar); err != nil {
		return nil, fmt.Errorf("decoding the AdmissionReview response %q: %w", data, err)
	}
	if ar.Response == nil {
		return nil, fmt.Errorf("AdmissionReview without a response: %s", data)
	}
	return ar.Response, nil
}
