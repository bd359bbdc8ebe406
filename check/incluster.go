package check

import (
	"context"
	"errors"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/audit"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/cel"
)

// ClusterTotals say what JudgeCluster read.
type ClusterTotals struct {
	// Judged counts the objects judged, by kind.
	Judged map[string]int
	// Admitted counts those without any violation, which are not returned.
	Admitted int
	// NotServed lists kinds the cluster does not serve (no MyApple CRD).
	NotServed []string
}

// JudgeCluster judges a cluster's Pods and MyApples as if each were created
// today, against the cluster's own namespaces and MyApples. It returns the
// objects with at least one violation, in list order, and the totals.
func (c *Checker) JudgeCluster(ctx context.Context, kube kubernetes.Interface, pageSize int64) ([]*Result, ClusterTotals, error) {
	if pageSize <= 0 {
		pageSize = audit.DefaultPageSize
	}
	totals := ClusterTotals{}
	opts := metav1.ListOptions{Limit: pageSize}
	for {
		list, err := kube.CoreV1().Namespaces().List(ctx, opts)
		if err != nil {
			return nil, totals, fmt.Errorf("listing the cluster's namespaces: %w", err)
		}
		for i := range list.Items {
			c.cluster.SetNamespace(list.Items[i].Name, list.Items[i].Labels, list.Items[i].Annotations)
		}
		if opts.Continue = list.Continue; opts.Continue == "" {
			break
		}
	}
	lister := &audit.Lister{Client: kube.CoreV1().RESTClient(), PageSize: pageSize}
	err := lister.Each(ctx, policy.KindMyApple, "", func(o *audit.Object) error {
		sp := o.Request.MyApple.Spec
		c.cluster.SetMyApple(o.Namespace, cel.Apple{Name: o.Name, Color: sp.Color, Size: sp.Size, Quantity: sp.Quantity})
		return nil
	})
	if err != nil && !errors.Is(err, audit.ErrNotServed) {
		return nil, totals, fmt.Errorf("reading the cluster's MyApples: %w", err)
	}

	var results []*Result
	t, err := audit.Sweep(ctx, lister, func(r *policy.Request) policy.Decision {
		r.Now = c.opts.Now
		return c.set.Evaluate(r, c.cluster)
	}, func(o *audit.Object, d *policy.Decision) error {
		if len(d.Violations) == 0 && !disagrees(d) {
			totals.Admitted++
			return nil
		}
		results = append(results, newResult(o.Kind, o.Namespace, o.Name, d))
		return nil
	})
	totals.Judged, totals.NotServed = t.Judged, t.NotServed
	if err != nil {
		return nil, totals, err
	}
	return results, totals, nil
}

// disagrees reports whether a candidate would decide d otherwise.
func disagrees(d *policy.Decision) bool {
	for _, c := range d.Candidates {
		if c.Outcome != v1alpha1.OutcomeSame {
			return true
		}
	}
	return false
}
