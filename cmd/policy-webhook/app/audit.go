package app

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/policy-webhook/policy-webhook/cache"
	"github.com/policy-webhook/policy-webhook/controllers/reports"
)

// newAuditor is the background audit, run on the leader, or nil when off.
// Its own clients keep its paged lists from queueing behind the cache's watches.
func newAuditor(cfg *rest.Config, opts Options, pc *cache.Cache, reg prometheus.Registerer, swept func()) (*reports.Auditor, error) {
	if opts.AuditInterval == 0 {
		return nil, nil
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the audit's Kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the audit's dynamic client: %w", err)
	}
	return reports.New(reports.Config{
		Policies:   pc,
		REST:       kube.CoreV1().RESTClient(),
		Dynamic:    dyn,
		Discovery:  kube.Discovery(),
		Interval:   opts.AuditInterval,
		Debounce:   opts.AuditDebounce,
		Format:     opts.ReportFormat,
		MaxResults: opts.ReportMaxResults,
		Passes:     opts.ReportPasses,
		Log:        opts.Log.WithName("audit"),
		Metrics:    reg,
		Swept:      swept,
	})
}
