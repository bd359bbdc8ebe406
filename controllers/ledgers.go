package controllers

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policy-webhook/policy-webhook/quota"
)

// DefaultLedgerCleanupInterval is Config.LedgerCleanupInterval's default:
// a deleted namespace's ledger is gone within a minute.
const DefaultLedgerCleanupInterval = 30 * time.Second

// Ledgers removes the quota ledger of every namespace that no longer
// exists: nothing else would, as the webhook writes a ledger only while
// MyApples are admitted in its namespace. It runs on the elected replica
// only.
type Ledgers struct {
	w        *writer
	interval time.Duration
}

// NeedLeaderElection makes controller-runtime's manager run it on the
// elected replica only.
func (l *Ledgers) NeedLeaderElection() bool { return true }

// Start sweeps once the cache has synced, then every interval, until ctx
// is done.
func (l *Ledgers) Start(ctx context.Context) error {
	if !l.w.cfg.Cache.WaitForSync(ctx) {
		return nil
	}
	t := time.NewTicker(l.interval)
	defer t.Stop()
	for {
		if err := l.sweep(ctx); err != nil && ctx.Err() == nil {
			l.w.log.Error(err, "Removing the quota ledgers of deleted namespaces, will retry", "interval", l.interval)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// sweep deletes the ledgers whose namespace is gone. The cache says which
// namespaces exist; one it does not hold is asked of the API server before
// its ledger goes, as the cache may not have seen a new namespace yet.
func (l *Ledgers) sweep(ctx context.Context) error {
	cfg := l.w.cfg
	cms := cfg.Kube.CoreV1().ConfigMaps(cfg.PolicyNamespace)
	list, err := cms.List(ctx, metav1.ListOptions{LabelSelector: quota.NamespaceLabel})
	if err != nil {
		return fmt.Errorf("listing the quota ledgers in %s: %w", cfg.PolicyNamespace, err)
	}
	for i := range list.Items {
		cm := &list.Items[i]
		ns := cm.Labels[quota.NamespaceLabel]
		if ns == "" || cm.Name != quota.LedgerPrefix+ns {
			continue // not a ledger the webhook wrote
		}
		if _, exists := cfg.Cache.NamespaceLabels(ns); exists {
			continue
		}
		_, err := cfg.Kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		switch {
		case err == nil:
			continue
		case !apierrors.IsNotFound(err):
			return fmt.Errorf("looking up namespace %s of quota ledger %s: %w", ns, cm.Name, err)
		}
		// Conditional on what was listed: a ledger written since is looked
		// at again next time.
		err = cms.Delete(ctx, cm.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &cm.UID, ResourceVersion: &cm.ResourceVersion}})
		switch {
		case err == nil:
			l.w.log.Info("Removed the quota ledger of a deleted namespace", "configMap", cfg.PolicyNamespace+"/"+cm.Name, "namespace", ns)
		case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		default:
			return fmt.Errorf("deleting quota ledger %s/%s of deleted namespace %s: %w", cfg.PolicyNamespace, cm.Name, ns, err)
		}
	}
	return nil
}
