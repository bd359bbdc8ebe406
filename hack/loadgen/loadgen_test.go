package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/policy-webhook/policy-webhook/hack/workload"
)

func TestSummarizeMergesWindows(t *testing.T) {
	ms := time.Millisecond
	lat := func(n int, d time.Duration) []time.Duration {
		out := make([]time.Duration, n)
		for i := range out {
			out[i] = d
		}
		return out
	}
	ws := []window{
		{lat: append(lat(98, 1*ms), 50*ms, 90*ms), elapsed: time.Second, errs: 1, firstError: "boom"},
		{lat: lat(200, 2*ms), elapsed: time.Second, bad: 2},
		{lat: lat(10, 3*ms), elapsed: time.Second}, // a stalled round
	}
	r := summarize(ws)
	if r.Requests != 310 || r.Errors != 1 || r.WrongVerdict != 2 || r.FirstError != "boom" {
		t.Fatalf("counts: %+v", r)
	}
	if r.PerSecond != 100 {
		t.Errorf("median rate = %v, want 100 (rates 100, 200, 10)", r.PerSecond)
	}
	if want := 310.0 / 3; r.TotalPerSecond != want {
		t.Errorf("total rate = %v, want %v", r.TotalPerSecond, want)
	}
	if r.P50 != 2*ms || r.Max != 90*ms {
		t.Errorf("p50 %v max %v, want 2ms 90ms", r.P50, r.Max)
	}
	if r.P99 != 3*ms {
		t.Errorf("p99 %v, want 3ms (index 306 of 310 sorted)", r.P99)
	}
}

func TestScrapeSumAddsEveryLabelSetOfThatMetricOnly(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`# HELP rest_client_requests_total Number of HTTP requests.
# TYPE rest_client_requests_total counter
rest_client_requests_total{code="200",host="127.0.0.1:6443",method="GET"} 12
rest_client_requests_total{code="201",host="127.0.0.1:6443",method="POST"} 3
rest_client_requests_total_other 100
`))
	}))
	defer srv.Close()
	got, err := scrapeSum(context.Background(), srv.Client(), srv.URL, "rest_client_requests_total")
	if err != nil || got != 15 {
		t.Fatalf("scrapeSum = %v, %v; want 15", got, err)
	}
	if _, err := scrapeSum(context.Background(), srv.Client(), srv.URL, "absent_total"); err == nil {
		t.Fatal("a missing metric must be an error, not 0")
	}
}

func TestReadProcOfThisProcess(t *testing.T) {
	// Burn some CPU so the reading cannot be zero.
	deadline := time.Now().Add(50 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = x * x
	}
	s, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.cpu <= 0 || s.rssBytes < 1<<20 {
		t.Fatalf("cpu %v rss %d: implausible for a running test binary", s.cpu, s.rssBytes)
	}
}

func TestReviewBodyIsTheSizeTheTargetsAreSetFor(t *testing.T) {
	body, err := workload.CreateReview(workload.DeploymentPod(false, 2), "u")
	if err != nil {
		t.Fatal(err)
	}
	if len(body) < 3500 || len(body) > 4000 {
		t.Fatalf("review is %d bytes, want about 3.7 KB", len(body))
	}
	var v struct {
		Request struct {
			Object struct {
				Spec struct {
					Containers []struct{ Image string } `json:"containers"`
				} `json:"spec"`
			} `json:"object"`
		} `json:"request"`
	}
	denied, err := workload.CreateReview(workload.DeploymentPod(true, 2), "u")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(denied, &v); err != nil {
		t.Fatal(err)
	}
	if got := v.Request.Object.Spec.Containers[1].Image; got != deniedImage {
		t.Fatalf("denied Pod's second image = %q", got)
	}
}

// The memory table prints heap per object rounded to whole bytes; a batch
// the heap shrank a little for reads 0, and a real loss stays negative.
func TestMemoryTableHeapPerObject(t *testing.T) {
	for _, c := range []struct {
		perObject float64
		want      string
	}{
		{-0.004, "  0 B "},
		{0, "  0 B "},
		{306.6, "  307 B "},
		{-12.2, "  -12 B "},
	} {
		r := &report{Memory: []memoryStage{{Stage: "+batch", Objects: 1000, HeapPerObject: c.perObject}}}
		var out strings.Builder
		r.print(&out)
		if !strings.Contains(out.String(), c.want) {
			t.Errorf("heap per object %v: table lacks %q:\n%s", c.perObject, c.want, out.String())
		}
	}
}
