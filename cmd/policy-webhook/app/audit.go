package app

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/policy-webhook/policy-webhook/audit"
	"github.com/policy-webhook/policy-webhook/policy/live"
)

// addAudit adds the background audit to the manager, which runs it on the
// elected leader only (audit.Auditor needs leader election). Its clients
// are its own, so its paged lists never queue behind the cache's watches.
func addAudit(mgr manager.Manager, cfg *rest.Config, opts Options, cache *live.Cache, reg prometheus.Registerer) error {
	if opts.AuditInterval == 0 {
		return nil
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating the audit's Kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating the audit's dynamic client: %w", err)
	}
	a, err := audit.New(audit.Config{
		Policies:  cache,
		REST:      kube.CoreV1().RESTClient(),
		Dynamic:   dyn,
		Discovery: kube.Discovery(),
		Interval:  opts.AuditInterval,
		Debounce:  opts.AuditDebounce,
		Log:       opts.Log.WithName("audit"),
		Metrics:   reg,
	})
	if err != nil {
		return err
	}
	if err := mgr.Add(a); err != nil {
		return fmt.Errorf("adding the audit: %w", err)
	}
	return nil
}
