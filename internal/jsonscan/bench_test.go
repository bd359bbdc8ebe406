package jsonscan

import (
	"testing"

	"github.com/policy-webhook/policy-webhook/test/workload"
)

// BenchmarkValidSkip is the floor of a scan of the benchmark review: the
// validation every scan starts with, and skipping the whole value.
func BenchmarkValidSkip(b *testing.B) {
	body, err := workload.CreateReview(workload.DeploymentPod(false, 2), "bench")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("valid", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if !Valid(body) {
				b.Fatal("not valid")
			}
		}
	})
	b.Run("skip", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		var s Scanner
		for b.Loop() {
			s.Reset(body)
			s.Skip()
			if s.Offset() != len(body) {
				b.Fatalf("skipped to %d of %d", s.Offset(), len(body))
			}
		}
	})
}
