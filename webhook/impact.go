package webhook

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/api/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy/cel"
)

// Bounds of the impact check a policy object gets at apply: the only
// admission that reads the API server, so it is held well inside the
// webhook's timeout and reads in pages.
const (
	impactBudget   = 2 * time.Second
	impactPageSize = 500
	impactNamed    = 5 // objects named in a warning; the rest are counted
)

// impact judges the objects that exist against a policy about to be
// applied, and says what it would deny, warn on or report.
type impact struct {
	dynamic dynamic.Interface
	cluster policy.Cluster // namespace labels and quotas, from the cache
	budget  time.Duration
}

// warnings tells a policy's author what it would do to the objects that
// exist: `this policy would deny 12 existing objects: Pod team-b/web
// (pods.allowedRegistries), ...`. Nothing when it would do nothing.
func (i *impact) warnings(ctx context.Context, p *policy.Policy) []string {
	ctx, cancel := context.WithTimeout(ctx, i.budget)
	defer cancel()
	set := policy.NewSet([]*policy.Policy{p})
	var (
		hits    []string
		count   int
		checked int
	)
	judge := func(req *policy.Request) {
		checked++
		req.Context = ctx
		d := set.Evaluate(req, i.cluster)
		if len(d.Violations) == 0 {
			return
		}
		count++
		if len(hits) < impactNamed {
			hits = append(hits, fmt.Sprintf("%s %s/%s (%s)", req.Kind, req.Namespace, req.Object().Name, d.Violations[0].Rule))
		}
	}
	var err error
	for _, kind := range []string{policy.KindPod, policy.KindMyApple} {
		if err == nil && p.Judges(kind) {
			err = i.list(ctx, kind, p.Scope, judge)
		}
	}
	var out []string
	if count > 0 {
		msg := fmt.Sprintf("this policy would %s %d existing %s: %s", verb(p.Enforcement), count, plural(count, "object", "objects"), strings.Join(hits, ", "))
		if count > len(hits) {
			msg += fmt.Sprintf(" and %d more", count-len(hits))
		}
		out = append(out, msg)
	}
	if err != nil {
		out = append(out, fmt.Sprintf("policy-webhook checked only %d existing objects against this policy: %v", checked, reason(err)))
	}
	return out
}

func verb(e v1alpha1.Enforcement) string {
	switch e {
	case v1alpha1.Warn:
		return "warn on"
	case v1alpha1.Audit:
		return "report"
	}
	return "deny"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func reason(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "the time to check them ran out"
	}
	return err.Error()
}

// list pages through the objects of kind in namespace ("" for all),
// judging each as a CREATE: an existing object has nothing to forgive.
func (i *impact) list(ctx context.Context, kind, namespace string, judge func(*policy.Request)) error {
	gvr := schema.GroupVersionResource{Version: "v1", Resource: policy.ResourcePods}
	if kind == policy.KindMyApple {
		gvr = schema.GroupVersionResource{Group: policy.GroupMyApple, Version: policy.VersionMyApple, Resource: policy.ResourceApples}
	}
	opts := metav1.ListOptions{Limit: impactPageSize}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		page, err := i.dynamic.Resource(gvr).Namespace(namespace).List(ctx, opts)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("listing %s: %w", gvr.Resource, err)
		}
		for j := range page.Items {
			req, err := existingRequest(kind, &page.Items[j])
			if err != nil {
				continue // the API server holds it; the rules cannot read it
			}
			judge(req)
		}
		if opts.Continue = page.GetContinue(); opts.Continue == "" {
			return nil
		}
	}
}

// existingRequest is a CREATE of an object that exists, converted to the
// lean types by their JSON names.
func existingRequest(kind string, u *unstructured.Unstructured) (*policy.Request, error) {
	req := &policy.Request{Kind: kind, Operation: policy.Create, Namespace: u.GetNamespace()}
	// CEL reads the object as listed: the dynamic client decodes integers as int64.
	req.Unstructured = func(*cel.Fields) (map[string]any, map[string]any, error) { return u.Object, nil, nil }
	var err error
	if kind == policy.KindPod {
		req.Pod = &policy.Pod{}
		err = runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, req.Pod)
	} else {
		req.MyApple = &policy.MyApple{}
		err = runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, req.MyApple)
	}
	return req, err
}
