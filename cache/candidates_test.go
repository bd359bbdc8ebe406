package cache

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/test/fakecluster"
	"github.com/policy-webhook/policy-webhook/test/promtest"
)

// candidate waits until the snapshot judges a candidate of src other
// than not, with the newest candidate's error as wantErr says, and
// returns its hash.
func (f *fixture) candidate(src policy.Source, not string, wantErr bool) CandidateState {
	f.T.Helper()
	var cs CandidateState
	fakecluster.Eventually(f.T, fmt.Sprintf("a candidate of %s other than %q (error: %t)", src, not, wantErr), func() bool {
		var ok bool
		cs, ok = f.cache.Snapshot().Candidates[src]
		return ok && cs.Candidate != nil && cs.Candidate.Hash != not && (cs.Err != nil) == wantErr
	})
	return cs
}

// A candidate has its own last good version: an invalid one leaves the
// policy in force and the candidate judged before it as they were, and is
// reported; removing it stops its judging.
func TestCandidateKeepsLastGood(t *testing.T) {
	const noLatest = "pods:\n  allowedRegistries: [registry.example.com/]\n  disallowedTags: [latest]\n"
	cm := fakecluster.PolicyConfigMap("team-a", "registries", fakecluster.RegistryPolicy)
	cm.Object["data"].(map[string]any)[policy.ConfigMapCandidateKey] = noLatest
	f := newFixture(t, cm)
	f.start()
	src := policy.Source{Kind: policy.SourceConfigMap, Namespace: "team-a", Name: "registries"}
	f.inForce(src, cm.GetResourceVersion())
	good := f.candidate(src, "", false)
	latest := fakecluster.PodRequest("team-a", "registry.example.com/app:latest")
	judge := func(want string) {
		t.Helper()
		d := f.cache.Evaluate(latest)
		if !d.Allowed {
			t.Fatalf("the candidate changed the verdict: %+v", d)
		}
		if len(d.Candidates) != 1 || d.Candidates[0].Outcome != want {
			t.Fatalf("candidates %+v, want one %s", d.Candidates, want)
		}
	}
	judge(v1alpha1.OutcomeWouldDeny)

	// An invalid candidate: the policy in force and the last good
	// candidate stay, the error is reported.
	cm = cm.DeepCopy()
	cm.Object["data"].(map[string]any)[policy.ConfigMapCandidateKey] = fakecluster.InvalidPolicy
	f.Update(cm)
	f.inForce(src, cm.GetResourceVersion())
	cs := f.candidate(src, "", true)
	if cs.Candidate != good.Candidate || !strings.Contains(cs.Err.Error(), "candidate.yaml: pods.allowedRegistries[0]") {
		t.Errorf("candidate %+v, want the last good one, and an error with its field path", cs)
	}
	if _, invalid := f.cache.Snapshot().Errors[src]; invalid {
		t.Error("an invalid candidate made the policy invalid")
	}
	judge(v1alpha1.OutcomeWouldDeny)
	if v := promtest.One(t, f.reg, MetricCandidateErrors, map[string]string{"kind": "ConfigMap", "namespace": "team-a", "name": "registries"}); v != 1 {
		t.Errorf("%s = %v, want 1", MetricCandidateErrors, v)
	}

	// A new good candidate replaces it and clears the error.
	cm = cm.DeepCopy()
	cm.Object["data"].(map[string]any)[policy.ConfigMapCandidateKey] = fakecluster.RegistryPolicy
	f.Update(cm)
	f.candidate(src, good.Candidate.Hash, false)
	judge(v1alpha1.OutcomeSame)
	if n := promtest.Count(t, f.reg, MetricCandidateErrors, nil); n != 0 {
		t.Errorf("%d %s series after the fix, want 0", n, MetricCandidateErrors)
	}

	// Removed, it is judged no more.
	cm = cm.DeepCopy()
	delete(cm.Object["data"].(map[string]any), policy.ConfigMapCandidateKey)
	f.Update(cm)
	f.inForce(src, cm.GetResourceVersion())
	fakecluster.Eventually(t, "no candidate", func() bool {
		_, ok := f.cache.Snapshot().Candidates[src]
		return !ok
	})
	if d := f.cache.Evaluate(latest); len(d.Candidates) != 0 {
		t.Errorf("candidates %+v after removal", d.Candidates)
	}
}

// The tally keeps counts per candidate, at most MaxCandidateDenials recent
// denials, newest first, and starts again when the candidate changes.
func TestCandidateTally(t *testing.T) {
	spec := "pods:\n  allowedRegistries: [registry.example.com/]\n"
	cm := fakecluster.PolicyConfigMap("team-a", "registries", spec)
	cm.Object["data"].(map[string]any)[policy.ConfigMapCandidateKey] = spec + "  disallowedTags: [latest]\n"
	f := newFixture(t, cm)
	f.start()
	src := policy.Source{Kind: policy.SourceConfigMap, Namespace: "team-a", Name: "registries"}
	first := f.candidate(src, "", false)
	tally := f.cache.CandidateTally()
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	for i := range 25 {
		image := "registry.example.com/app:1"
		if i%2 == 0 {
			image = "registry.example.com/app:latest"
		}
		d := f.cache.Evaluate(fakecluster.PodRequest("team-a", image))
		tally.Record(policy.Admission{Kind: "Pod", Namespace: "team-a", Name: fmt.Sprintf("p%02d", i), Operation: "CREATE", Time: t0.Add(time.Duration(i) * time.Second)}, d.Candidates)
	}
	got, ok := tally.Read(src)
	if !ok || got.Hash != first.Candidate.Hash || got.Judged != 25 || got.WouldDeny != 13 || got.Same != 12 {
		t.Fatalf("tally %+v", got)
	}
	if len(got.Denials) != v1alpha1.MaxCandidateDenials || got.Denials[0].Name != "p24" || got.Denials[9].Name != "p06" ||
		!strings.HasPrefix(got.Denials[0].Violation, "pods.disallowedTags spec.containers[0].image: ") {
		t.Errorf("denials %+v, want the last 10 newest first", got.Denials)
	}
	if !got.Since.Time.Equal(t0) {
		t.Errorf("since %v, want the first admission's time", got.Since)
	}

	// A new candidate starts from nothing.
	cm = cm.DeepCopy()
	cm.Object["data"].(map[string]any)[policy.ConfigMapCandidateKey] = spec + "  disallowedTags: [latest, dev]\n"
	f.Update(cm)
	next := f.candidate(src, first.Candidate.Hash, false)
	if got, ok := tally.Read(src); !ok || got.Hash != next.Candidate.Hash || got.Judged != 0 || len(got.Denials) != 0 {
		t.Errorf("tally after a new candidate %+v", got)
	}
}
