package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	restfake "k8s.io/client-go/rest/fake"

	"github.com/policy-webhook/policy-webhook/policy"
)

// pagedPods serves n Pods in pages of the limit asked for, the continue
// token being the index of the next Pod.
func pagedPods(t *testing.T, n int) *restfake.RESTClient {
	t.Helper()
	return &restfake.RESTClient{
		NegotiatedSerializer: scheme.Codecs.WithoutConversion(),
		Client: restfake.CreateHTTPClient(func(req *http.Request) (*http.Response, error) {
			if req.URL.Path != "/api/v1/pods" {
				return &http.Response{StatusCode: http.StatusNotFound, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(nil))}, nil
			}
			limit, err := strconv.Atoi(req.URL.Query().Get("limit"))
			if err != nil {
				return nil, err
			}
			from, _ := strconv.Atoi(req.URL.Query().Get("continue"))
			list := corev1.PodList{}
			for i := from; i < n && i < from+limit; i++ {
				list.Items = append(list.Items, corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("pod-%d", i)}})
			}
			if next := from + limit; next < n {
				list.Continue = strconv.Itoa(next)
			}
			body, err := json.Marshal(list)
			if err != nil {
				return nil, err
			}
			return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(bytes.NewReader(body))}, nil
		}),
	}
}

// TestListerPaces: a list with a duty cycle rests between pages for the
// share of time it did not work, after every page but the last; without
// one it never rests. The clock moves only while objects are judged.
func TestListerPaces(t *testing.T) {
	for _, tt := range []struct {
		duty float64
		want []time.Duration
	}{
		{0.25, []time.Duration{30 * time.Millisecond, 30 * time.Millisecond}}, // 3 pages of 2 objects at 5 ms each
		{0.5, []time.Duration{10 * time.Millisecond, 10 * time.Millisecond}},
		{1, nil},
		{0, nil},
	} {
		t.Run(fmt.Sprint(tt.duty), func(t *testing.T) {
			clock := time.Unix(0, 0)
			var rests []time.Duration
			l := &Lister{Client: pagedPods(t, 6), PageSize: 2, DutyCycle: tt.duty,
				now: func() time.Time { return clock },
				rest: func(_ context.Context, d time.Duration) error {
					rests = append(rests, d)
					clock = clock.Add(d)
					return nil
				},
			}
			var names []string
			err := l.Each(context.Background(), policy.KindPod, "", func(o *Object) error {
				clock = clock.Add(5 * time.Millisecond)
				names = append(names, o.Name)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(names) != 6 {
				t.Errorf("judged %v, want the 6 Pods", names)
			}
			if !reflect.DeepEqual(rests, tt.want) {
				t.Errorf("rested %v, want %v", rests, tt.want)
			}
		})
	}
}

// A rest ends with the list's context.
func TestListerRestEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Lister{Client: pagedPods(t, 4), PageSize: 2, DutyCycle: 0.000001}
	err := l.Each(ctx, policy.KindPod, "", func(*Object) error {
		cancel()
		return nil
	})
	if err != context.Canceled {
		t.Fatalf("got %v, want the list cancelled while it rested", err)
	}
}
