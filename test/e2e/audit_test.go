package e2e

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/test/inprocess"
)

// app.Run with an audit interval runs the audit: a Pod created before
// an Audit policy shows in the policy's status.audit. The replica that
// audits is a second one, not registered, with its own metrics registry,
// so the shared webhook still makes no API request while admitting.
func TestAuditInServe(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace(t, nil)
	wantAdmitted(t, createPod(ctx, pod(ns, "old", nil, "docker.io/library/nginx:1.27"), metav1.CreateOptions{}))

	name := "e2e-audit-" + ns
	ap := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "policy.example.com/v1alpha1", "kind": "AdmissionPolicy",
		"metadata": map[string]any{"name": name},
		"spec": map[string]any{
			"enforcement": "Audit",
			// This test's namespace only: other tests' Pods stay unjudged.
			"match": map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{testLabel: ns}}},
			"pods":  map[string]any{"allowedRegistries": []any{"registry.example.com/"}},
		},
	}}
	if _, err := env.dyn.Resource(admissionPolicies).Create(ctx, ap, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.dyn.Resource(admissionPolicies).Delete(ctx, name, metav1.DeleteOptions{}) })

	wh, err := inprocess.Start(ctx, inprocess.Options{
		RestConfig: env.cfg, AuditInterval: time.Second, MetricsRegistry: prometheus.NewRegistry(),
		Log: env.log.WithName("auditing-replica"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := wh.Stop(); err != nil && !errors.Is(err, context.Canceled) {
			t.Error(err)
		}
	})
	eventually(t, "status.audit", func() error {
		u, err := env.dyn.Resource(admissionPolicies).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		var got v1alpha1.AdmissionPolicy
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &got); err != nil {
			return err
		}
		a := got.Status.Audit
		switch {
		case a == nil:
			return errors.New("no status.audit yet")
		case a.TotalViolations != 1 || len(a.Violations) != 1 || a.Violations[0].Name != "old" || a.Violations[0].Namespace != ns:
			return fmt.Errorf("status.audit %+v, want Pod %s/old", a, ns)
		}
		return nil
	})
}
