package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"

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

// TestListerStreamsPages: every object of every page, in order, one list
// request per page.
func TestListerStreamsPages(t *testing.T) {
	client := pagedPods(t, 7)
	l := &Lister{Client: client, PageSize: 2}
	var names []string
	if err := l.Each(context.Background(), policy.KindPod, "", func(o *Object) error {
		names = append(names, o.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{"pod-0", "pod-1", "pod-2", "pod-3", "pod-4", "pod-5", "pod-6"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("judged %v, want %v", names, want)
	}
}

// A reader that stops early gets its error back at once, and the fetcher
// stops with it.
func TestListerStopsEarly(t *testing.T) {
	l := &Lister{Client: pagedPods(t, 1000), PageSize: 10}
	stop := errors.New("enough")
	n := 0
	err := l.Each(context.Background(), policy.KindPod, "", func(*Object) error {
		if n++; n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Fatalf("got %v after %d objects, want %v after 3", err, n, stop)
	}
}

func TestListerNotServed(t *testing.T) {
	l := &Lister{Client: pagedPods(t, 1)}
	err := l.Each(context.Background(), policy.KindMyApple, "", func(*Object) error { return nil })
	if !errors.Is(err, ErrNotServed) {
		t.Fatalf("got %v, want ErrNotServed", err)
	}
}

// An object the admission decoder refuses ends the list with an error
// naming the page and the item.
func TestListerNamesAnUndecodableItem(t *testing.T) {
	client := &restfake.RESTClient{
		NegotiatedSerializer: scheme.Codecs.WithoutConversion(),
		Client: restfake.CreateHTTPClient(func(*http.Request) (*http.Response, error) {
			body := `{"kind":"PodList","metadata":{},"items":[{"metadata":{"name":"a"}},{"metadata":{"name":"b"},"spec":{"containers":"not a list"}}]}`
			return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(body))}, nil
		}),
	}
	var names []string
	err := (&Lister{Client: client}).Each(context.Background(), policy.KindPod, "", func(o *Object) error {
		names = append(names, o.Name)
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "page 1, after 1 items") || !strings.Contains(err.Error(), "item 1") {
		t.Fatalf("got %v, want an error naming page 1 and item 1", err)
	}
	if !reflect.DeepEqual(names, []string{"a"}) {
		t.Errorf("judged %v before the error, want [a]", names)
	}
	t.Log(err)
}
