package cache

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/carrier"
)

// sourceHandler feeds one kind of policy source to on, skipping resyncs.
func (c *Cache) sourceHandler(kind string, on func(obj any)) toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: on,
		UpdateFunc: func(old, obj any) {
			if !sameResourceVersion(old, obj) {
				on(obj)
			}
		},
		DeleteFunc: func(obj any) {
			if ns, name, ok := objectKey(obj); ok {
				c.removeSource(policy.Source{Kind: kind, Namespace: ns, Name: name}, time.Now())
			}
		},
	}
}

func (c *Cache) onConfigMap(obj any) {
	received := time.Now()
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	src := policy.Source{Kind: policy.SourceConfigMap, Namespace: u.GetNamespace(), Name: u.GetName()}
	if !policy.IsPolicyConfigMap(u.GetLabels()) {
		// The watch selects the label on the API server, which reports an
		// object losing it as a deletion. This guards any path that would
		// report it as an update instead.
		c.removeSource(src, received)
		return
	}
	p, err := c.compiler.Compile(u, c.cfg.PolicyNamespace)
	c.applySource(src, u, u.GetResourceVersion(), p, err, c.compileCandidate(u), received)
}

func (c *Cache) onAdmissionPolicy(obj any) {
	received := time.Now()
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	src := policy.Source{Kind: policy.SourceAdmissionPolicy, Name: u.GetName()}
	version := strconv.FormatInt(u.GetGeneration(), 10)
	if st, ok := c.sources.get(src); ok && st.uid == u.GetUID() && st.version == version && version != "0" {
		// The generation counts spec changes only: this is a change of
		// metadata or status (often our own status write), so there is
		// nothing to compile, but the status may still need setting right.
		for _, fn := range c.policyListeners {
			fn(u.GetName())
		}
		return
	}
	p, err := c.compiler.Compile(u, c.cfg.PolicyNamespace)
	c.applySource(src, u, version, p, err, c.compileCandidate(u), received)
}

// applySource records a new version of a source, logs it if invalid, and
// has a new snapshot built.
func (c *Cache) applySource(src policy.Source, u *unstructured.Unstructured, version string, p *policy.Policy, err error, cand candidateVersion, received time.Time) {
	var standIn *policy.Policy
	if err != nil {
		standIn = carrier.StandIn(u, c.cfg.PolicyNamespace, func(e v1alpha1.Enforcement) string {
			return standInMessage(src.Kind, version, e, err)
		})
	}
	st := c.sources.set(src, u, version, p, standIn, err, cand)
	if cand.err == nil {
		c.metrics.candidateErrors.DeleteLabelValues(src.Kind, src.Namespace, src.Name)
	} else {
		c.metrics.candidateErrors.WithLabelValues(src.Kind, src.Namespace, src.Name).Set(1)
		c.log.Error(cand.err, "Candidate is invalid and not judged: the policy in force is untouched", "source", src.String(), "version", version,
			"candidateJudged", st.candidate != nil)
	}
	if err == nil {
		c.metrics.policyErrors.DeleteLabelValues(src.Kind, src.Namespace, src.Name)
		c.log.V(1).Info("Policy in force", "source", src.String(), "version", version)
	} else {
		c.metrics.policyErrors.WithLabelValues(src.Kind, src.Namespace, src.Name).Set(1)
		c.log.Error(err, "Policy version is invalid and not in force", "source", src.String(), "version", version, "inForce", inForceVersion(&st))
	}
	c.changed(received)
}

func (c *Cache) removeSource(src policy.Source, received time.Time) {
	if !c.sources.remove(src) {
		return
	}
	c.metrics.policyErrors.DeleteLabelValues(src.Kind, src.Namespace, src.Name)
	c.metrics.candidateErrors.DeleteLabelValues(src.Kind, src.Namespace, src.Name)
	c.log.Info("Policy source deleted, no longer in force", "source", src.String())
	c.changed(received)
}

// Problems says what is wrong with a source, without naming it again: the
// Event and the status it goes into are on the source itself.
func Problems(err error) string {
	var invalid *policy.InvalidError
	if errors.As(err, &invalid) {
		return invalid.Problems()
	}
	return err.Error()
}

// VersionName is what a carrier's versions are.
func VersionName(kind string) string {
	if kind == policy.SourceAdmissionPolicy {
		return "generation"
	}
	return "resourceVersion"
}

// StillInForce says what applies instead of an invalid version of a
// source: its last good version, perhaps as persisted, or its stand-in.
func (se SourceError) StillInForce(kind, policyNamespace string) string {
	switch {
	case se.InForce != "" && se.Restored:
		return fmt.Sprintf("%s %s, the last good version, stays in force as persisted in ConfigMap %s/%s", VersionName(kind), se.InForce, policyNamespace, LastGoodConfigMap)
	case se.InForce != "":
		return VersionName(kind) + " " + se.InForce + " stays in force"
	case se.StandIn != "":
		return "no good version of it is known: what it matches " + standInEffect(se.StandIn) + " until it is fixed"
	}
	return "no version of it is in force"
}

// standInEffect is what a stand-in does to what it covers.
func standInEffect(e v1alpha1.Enforcement) string {
	switch e {
	case v1alpha1.Warn:
		return "gets a warning"
	case v1alpha1.Audit:
		return "is audited"
	}
	return "is refused"
}

// standInMessage is the violation a stand-in reports: to whoever is
// refused, it names the policy (the violation's source), says it is
// invalid and why.
func standInMessage(kind, version string, e v1alpha1.Enforcement, err error) string {
	return fmt.Sprintf("the policy is invalid (%s %s) and no good version of it is known, so what it matches %s until it is fixed: %s",
		VersionName(kind), version, standInEffect(e), Problems(err))
}

// changed has a new snapshot built. Bursts coalesce: however many changes
// arrive while a build runs, one more build follows and takes them all.
func (c *Cache) changed(received time.Time) {
	c.pendingSince.CompareAndSwap(0, received.UnixNano())
	select {
	case c.dirty <- struct{}{}:
	default:
	}
}

// sameResourceVersion tells a resync, which re-delivers an unchanged
// object, from a change.
func sameResourceVersion(old, obj any) bool {
	o, err1 := meta.Accessor(old)
	n, err2 := meta.Accessor(obj)
	return err1 == nil && err2 == nil && o.GetResourceVersion() != "" && o.GetResourceVersion() == n.GetResourceVersion()
}

// objectKey names a deleted object, which may come as the tombstone the
// informer leaves when it missed the deletion itself.
func objectKey(obj any) (namespace, name string, ok bool) {
	if t, isTombstone := obj.(toolscache.DeletedFinalStateUnknown); isTombstone {
		ns, name, err := toolscache.SplitMetaNamespaceKey(t.Key)
		return ns, name, err == nil
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return "", "", false
	}
	return m.GetNamespace(), m.GetName(), true
}

// compileCandidate compiles the candidate u carries beside its policy.
func (c *Cache) compileCandidate(u *unstructured.Unstructured) candidateVersion {
	cand, present, err := c.compiler.CompileCandidate(u, c.cfg.PolicyNamespace)
	return candidateVersion{present: present, c: cand, err: err}
}
