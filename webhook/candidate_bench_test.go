package webhook

import (
	"encoding/json"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/policy-webhook/policy-webhook/cache"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/carrier"
)

// candidateJudge is a setJudge that tallies candidate outcomes as the
// cache does, in a real CandidateTally.
type candidateJudge struct {
	*setJudge
	tally *cache.CandidateTally
}

func (j *candidateJudge) RecordCandidates(a policy.Admission, rs []policy.CandidateResult) {
	j.tally.Record(a, rs)
}

// candidateSetup is the benchmark policy of BenchmarkHandlePod as a
// cluster-wide ConfigMap, alone or with a candidate of the same schema
// (one more disallowed tag) in candidate.yaml, compiled as the cache does.
func candidateSetup(tb testing.TB, withCandidate bool) Judge {
	tb.Helper()
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("v1")
	u.SetKind(policy.SourceConfigMap)
	u.SetNamespace(testPolicyNamespace)
	u.SetName("baseline")
	u.SetResourceVersion("7")
	u.SetLabels(map[string]string{policy.PolicyLabel: "true"})
	data := map[string]any{policy.ConfigMapDataKey: benchPolicyYAML(1)}
	if withCandidate {
		data[policy.ConfigMapCandidateKey] = strings.Replace(benchPolicyYAML(1), "disallowedTags: [latest]", "disallowedTags: [latest, dev]", 1)
	}
	if err := unstructured.SetNestedField(u.Object, data, "data"); err != nil {
		tb.Fatal(err)
	}
	compiler := carrier.New()
	p, err := compiler.Compile(u, testPolicyNamespace)
	if err != nil {
		tb.Fatal(err)
	}
	images := policy.WithImageCache(policy.NewImageCache(128))
	if !withCandidate {
		return &setJudge{set: policy.NewSet([]*policy.Policy{p}, images), synced: true, cluster: benchCluster{}}
	}
	c, present, err := compiler.CompileCandidate(u, testPolicyNamespace)
	if err != nil || !present {
		tb.Fatalf("candidate: %v (present %t)", err, present)
	}
	set := policy.NewSet([]*policy.Policy{p}, images, policy.WithCandidates([]*policy.Policy{c.Policy}))
	snap := &cache.Snapshot{Set: set, Candidates: map[policy.Source]cache.CandidateState{p.Source: {Candidate: c}}}
	return &candidateJudge{
		setJudge: &setJudge{set: set, synced: true, cluster: benchCluster{}},
		tally:    cache.NewCandidateTally(func() *cache.Snapshot { return snap }),
	}
}

// BenchmarkHandlePodCandidate is one Pod admission through the whole
// handler against one policy, alone and with a candidate beside it: what
// judging the candidate adds (its rules, the outcome, the metric, the
// annotation and the replica's tally). Issue 20 holds it to 2.1x.
func BenchmarkHandlePodCandidate(b *testing.B) {
	body := benchReview(b)
	for _, tt := range []struct {
		name string
		with bool
	}{{"policy", false}, {"policy+candidate", true}} {
		b.Run(tt.name, func(b *testing.B) {
			srv := newTestServer(b, candidateSetup(b, tt.with), false)
			var out admissionv1.AdmissionReview
			rec := srv.post(b, PathPods, body)
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || !out.Response.Allowed {
				b.Fatalf("bench pod not allowed: %s", rec.Body)
			}
			if got, want := out.Response.AuditAnnotations[annotationCandidate], "ConfigMap "+testPolicyNamespace+"/baseline@7 same"; tt.with && got != want {
				b.Fatalf("candidate annotation %q, want %q", got, want)
			}
			serve := benchServe(b, srv.handlers[PathPods], body)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				serve()
			}
		})
	}
}
