package controllers

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/cache"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/carrier"
	"github.com/policy-webhook/policy-webhook/test/fakecluster"
)

func TestSumCandidate(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	at := func(s int) metav1.Time { return metav1.NewTime(t0.Add(time.Duration(s) * time.Second)) }
	denials := func(replica string, from, n int) []v1alpha1.CandidateDenial {
		var out []v1alpha1.CandidateDenial
		for i := n - 1; i >= 0; i-- { // newest first, as a replica writes them
			out = append(out, v1alpha1.CandidateDenial{Kind: "Pod", Namespace: "a", Name: fmt.Sprintf("%s-%d", replica, from+i), Operation: "CREATE", Time: at(from + i)})
		}
		return out
	}
	entry := func(name, hash string, since int, c v1alpha1.CandidateCounts, d []v1alpha1.CandidateDenial) v1alpha1.ReplicaStatus {
		return v1alpha1.ReplicaStatus{Name: name, Candidate: &v1alpha1.ReplicaCandidate{Hash: hash, Since: at(since), CandidateCounts: c, Denials: d}}
	}
	cand := &carrier.Candidate{Policy: &policy.Policy{Version: "7"}, Hash: "0123456789abcdef"}
	existing := &v1alpha1.AuditStatus{TotalViolations: 3}
	tests := []struct {
		name        string
		cs          cache.CandidateState
		replicas    []v1alpha1.ReplicaStatus
		wantCounts  v1alpha1.CandidateCounts
		wantSummary string
		wantSince   *metav1.Time
		wantDenials []string
		wantValid   bool
	}{
		{"two replicas summed, denials merged newest first and bounded", cache.CandidateState{Candidate: cand}, []v1alpha1.ReplicaStatus{
			entry("r1", cand.Hash, 5, v1alpha1.CandidateCounts{Judged: 12, Same: 4, WouldDeny: 8}, denials("r1", 10, 8)),
			entry("r2", cand.Hash, 3, v1alpha1.CandidateCounts{Judged: 9, Same: 4, WouldDeny: 4, WouldAllow: 1}, denials("r2", 15, 4)),
			{Name: "r3"}, // no candidate judged yet
		}, v1alpha1.CandidateCounts{Judged: 21, Same: 8, WouldDeny: 12, WouldAllow: 1}, "+12 deny / -1", timePtr(at(3)),
			[]string{"r2-18", "r1-17", "r2-17", "r1-16", "r2-16", "r1-15", "r2-15", "r1-14", "r1-13", "r1-12"}, true},
		{"an entry of another candidate is not counted", cache.CandidateState{Candidate: cand}, []v1alpha1.ReplicaStatus{
			entry("r1", cand.Hash, 5, v1alpha1.CandidateCounts{Judged: 2, Same: 2}, nil),
			entry("r2", "fedcba9876543210", 1, v1alpha1.CandidateCounts{Judged: 9, WouldDeny: 9}, denials("r2", 1, 2)),
		}, v1alpha1.CandidateCounts{Judged: 2, Same: 2}, "+0 deny / -0", timePtr(at(5)), nil, true},
		{"invalid, its last good one still counted", cache.CandidateState{Candidate: cand, Err: errors.New("spec.candidate.pods.x: unknown field")}, []v1alpha1.ReplicaStatus{
			entry("r1", cand.Hash, 5, v1alpha1.CandidateCounts{Judged: 1, WouldWarn: 1}, nil),
		}, v1alpha1.CandidateCounts{Judged: 1, WouldWarn: 1}, "+0 deny / -0", timePtr(at(5)), nil, false},
		{"invalid with no good one", cache.CandidateState{Err: errors.New("spec.candidate.pods.x: unknown field")}, nil,
			v1alpha1.CandidateCounts{}, "invalid", nil, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := sumCandidate(tt.cs, tt.replicas, existing, "policy-system")
			if got.CandidateCounts != tt.wantCounts || got.Summary != tt.wantSummary || got.Valid != tt.wantValid || got.Existing != existing {
				t.Errorf("got %+v", got)
			}
			if (got.Since == nil) != (tt.wantSince == nil) || got.Since != nil && !got.Since.Equal(tt.wantSince) {
				t.Errorf("since %v, want %v", got.Since, tt.wantSince)
			}
			var names []string
			for _, d := range got.RecentDenials {
				names = append(names, d.Name)
			}
			if fmt.Sprint(names) != fmt.Sprint(tt.wantDenials) {
				t.Errorf("recent denials %v, want %v", names, tt.wantDenials)
			}
			if !tt.wantValid && !strings.Contains(got.Message, "spec.candidate.pods.x") {
				t.Errorf("message %q, want the problem", got.Message)
			}
			if tt.cs.Candidate != nil && (got.Hash != cand.Hash || got.Generation != 7) {
				t.Errorf("hash %q generation %d", got.Hash, got.Generation)
			}
		})
	}
}

func timePtr(v metav1.Time) *metav1.Time { return &v }

// A ConfigMap has no status: the leader summarises its candidate's
// outcomes in an Event, at most every CandidateEventInterval and only when
// they changed, and warns of an invalid candidate.
func TestCandidateEventsOnConfigMap(t *testing.T) {
	spec := "pods:\n  allowedRegistries: [registry.example.com/]\n"
	cm := fakecluster.PolicyConfigMap("team-a", "registries", spec)
	cm.Object["data"].(map[string]any)[policy.ConfigMapCandidateKey] = spec + "  disallowedTags: [latest]\n"
	f := &fixture{Cluster: fakecluster.New(t, cm), candidateEvents: 200 * time.Millisecond}
	f.newReplica()
	f.start()
	src := policy.Source{Kind: policy.SourceConfigMap, Namespace: "team-a", Name: "registries"}
	fakecluster.Eventually(t, "the candidate judged", func() bool {
		cs, ok := f.cache.Snapshot().Candidates[src]
		return ok && cs.Candidate != nil
	})
	admit := func(name string) {
		d := f.cache.Evaluate(fakecluster.PodRequest("team-a", "registry.example.com/app:latest"))
		f.cache.RecordCandidates(policy.Admission{Kind: "Pod", Namespace: "team-a", Name: name, Operation: "CREATE", Time: time.Now()}, d.Candidates)
	}
	outcomes := func() []string {
		var out []string
		for _, e := range f.Events("team-a", "registries") {
			if e.Reason == ReasonCandidateOutcomes {
				out = append(out, e.Message)
			}
		}
		return out
	}
	admit("first")
	fakecluster.Eventually(t, "an Event summarising one admission", func() bool {
		got := outcomes()
		return len(got) == 1 && strings.Contains(got[0], "1 admissions, 0 same, 1 would deny, 0 would allow, 0 would warn") &&
			strings.Contains(got[0], "last it would deny: Pod team-a/first (CREATE): pods.disallowedTags spec.containers[0].image")
	})
	// Nothing changes: no more Events, however many intervals pass.
	time.Sleep(5 * f.candidateEvents)
	if got := outcomes(); len(got) != 1 {
		t.Fatalf("%d Events while nothing changed: %q", len(got), got)
	}
	admit("second")
	fakecluster.Eventually(t, "a second Event once the outcomes changed", func() bool {
		got := outcomes()
		return len(got) == 2 && (strings.Contains(got[0], "2 admissions") || strings.Contains(got[1], "2 admissions"))
	})

	// An invalid candidate is warned of, the last good one still judged.
	cm = cm.DeepCopy()
	cm.Object["data"].(map[string]any)[policy.ConfigMapCandidateKey] = fakecluster.InvalidPolicy
	f.Update(cm)
	fakecluster.Eventually(t, "a Warning Event on the invalid candidate", func() bool {
		for _, e := range f.Events("team-a", "registries") {
			if e.Reason == ReasonInvalidCandidate && e.Type == "Warning" && strings.Contains(e.Message, "candidate.yaml: pods.allowedRegistries[0]") &&
				strings.Contains(e.Message, "its last good candidate") && strings.Contains(e.Message, "the policy in force is untouched") {
				return true
			}
		}
		return false
	})
}
