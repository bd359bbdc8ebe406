package controllers

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
)

// Every replica renews a Lease of its own, as a kubelet its node Lease, so
// that the leader can tell the replicas alive: a Lease needs no more RBAC
// than the webhook has, and expires by itself when a replica dies.
const (
	heartbeatLeasePrefix = "policy-webhook-replica-"
	// HeartbeatLabel tells heartbeat Leases from the leader election Lease.
	HeartbeatLabel = "policy.example.com/replica-heartbeat"
	// heartbeatMisses is how many renewals a replica may miss before it
	// counts as gone: a replica is not dropped for one slow request.
	heartbeatMisses        = 4
	heartbeatDeleteTimeout = 2 * time.Second
)

func heartbeatLeaseName(replica string) string { return heartbeatLeasePrefix + replica }

// heartbeat renews the replica's Lease every interval until ctx is done,
// then deletes it, so that the leader sees a replica that stopped cleanly
// gone at once rather than after the Lease expires.
func (r *ReplicaStatus) heartbeat(ctx context.Context) {
	cfg := r.w.cfg
	wait.JitterUntilWithContext(ctx, func(ctx context.Context) {
		if err := r.renewHeartbeat(ctx); err != nil && ctx.Err() == nil {
			r.w.log.Error(err, "Renewing the replica's heartbeat Lease, will retry", "lease", heartbeatLeaseName(cfg.Replica))
		}
	}, cfg.HeartbeatInterval, 0.1, true)

	// ctx is done: the deletion gets a short budget of its own.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), heartbeatDeleteTimeout)
	defer cancel()
	err := cfg.Kube.CoordinationV1().Leases(cfg.PolicyNamespace).Delete(dctx, heartbeatLeaseName(cfg.Replica), metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		r.w.log.Error(err, "Deleting the replica's heartbeat Lease; it expires by itself", "lease", heartbeatLeaseName(cfg.Replica))
	}
}

func (r *ReplicaStatus) renewHeartbeat(ctx context.Context) error {
	cfg := r.w.cfg
	leases := cfg.Kube.CoordinationV1().Leases(cfg.PolicyNamespace)
	name := heartbeatLeaseName(cfg.Replica)
	now := metav1.NewMicroTime(cfg.Clock.Now())
	spec := coordinationv1.LeaseSpec{
		HolderIdentity:       ptr.To(cfg.Replica),
		LeaseDurationSeconds: ptr.To(int32((heartbeatMisses * cfg.HeartbeatInterval).Round(time.Second).Seconds())),
		RenewTime:            &now,
	}
	if *spec.LeaseDurationSeconds < 1 {
		*spec.LeaseDurationSeconds = 1
	}
	lease, err := leases.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		spec.AcquireTime = &now
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: cfg.PolicyNamespace, Labels: map[string]string{HeartbeatLabel: "true"}},
			Spec:       spec,
		}, metav1.CreateOptions{FieldManager: FieldManager})
		if err != nil {
			return fmt.Errorf("creating Lease %s/%s: %w", cfg.PolicyNamespace, name, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("reading Lease %s/%s: %w", cfg.PolicyNamespace, name, err)
	}
	spec.AcquireTime = lease.Spec.AcquireTime
	lease.Spec = spec
	if _, err := leases.Update(ctx, lease, metav1.UpdateOptions{FieldManager: FieldManager}); err != nil {
		return fmt.Errorf("renewing Lease %s/%s: %w", cfg.PolicyNamespace, name, err)
	}
	return nil
}

// aliveReplicas lists the replicas whose heartbeat Lease is current, by
// the clock of the caller: the Lease duration (several renewals) absorbs
// the skew between replicas' clocks.
func (w *writer) aliveReplicas(ctx context.Context, now time.Time) (map[string]bool, error) {
	cfg := w.cfg
	list, err := cfg.Kube.CoordinationV1().Leases(cfg.PolicyNamespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(labels.Set{HeartbeatLabel: "true"}).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("listing the replicas' heartbeat Leases in %s: %w", cfg.PolicyNamespace, err)
	}
	alive := make(map[string]bool, len(list.Items))
	for i := range list.Items {
		s := &list.Items[i].Spec
		if s.HolderIdentity == nil || s.RenewTime == nil || s.LeaseDurationSeconds == nil {
			continue
		}
		if now.Before(s.RenewTime.Add(time.Duration(*s.LeaseDurationSeconds) * time.Second)) {
			alive[*s.HolderIdentity] = true
		}
	}
	return alive, nil
}
