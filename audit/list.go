package audit

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/review"
)

// DefaultPageSize is how many objects one list request asks for: memory
// holds one page at a time, however large the cluster.
const DefaultPageSize = 500

// maxPages bounds one list, so that a server that keeps returning a
// continue token cannot keep a sweep going for ever: 20,000 pages of 500
// is ten million objects.
const maxPages = 20000

// Object is one existing Pod or MyApple, decoded as an admission decodes it.
type Object struct {
	Kind      string
	Namespace string
	Name      string
	UID       types.UID
	// Request judges the object as a CREATE: an existing object has no
	// older version to be forgiven against.
	Request *policy.Request
}

// Lister reads every Pod or MyApple of the cluster in pages (limit and
// continue), decoding each with review.DecodeObject, the admission's own
// decoder.
type Lister struct {
	// Client is any REST client of the API server; requests name their
	// absolute path, so its group does not matter.
	Client rest.Interface
	// PageSize is the limit of each list request; 0 is DefaultPageSize.
	PageSize int64
}

// ErrNotServed is returned when the API server does not serve a kind: a
// cluster without the MyApple CRD has no MyApples to judge.
var ErrNotServed = errors.New("the API server does not serve this resource")

// Kinds are the kinds a sweep reads, in the order it reads them.
var Kinds = []string{policy.KindPod, policy.KindMyApple}

// listPath is the list path of a judged kind in namespace, or in the
// whole cluster when namespace is "".
func listPath(kind, namespace string) (string, error) {
	ns := ""
	if namespace != "" {
		ns = "namespaces/" + namespace + "/"
	}
	switch kind {
	case policy.KindPod:
		return "/api/v1/" + ns + policy.ResourcePods, nil
	case policy.KindMyApple:
		return "/apis/" + policy.GroupMyApple + "/" + policy.VersionMyApple + "/" + ns + policy.ResourceApples, nil
	}
	return "", fmt.Errorf("kind %q is not judged: only Pod and MyApple are", kind)
}

// page is one list response: its continue token and its items, kept raw
// for the admission decoder.
type page struct {
	Metadata struct {
		Continue string `json:"continue"`
	} `json:"metadata"`
	Items []jsontext.Value `json:"items"`
}

// Each calls fn with every object of kind in namespace ("" for the whole
// cluster), page after page. The next page
// is fetched while fn judges the current one, so the API server's time and
// the judging overlap; at most three pages are held at once. An object
// that does not decode is an error naming it: the API server stored it,
// so the decoder and the API disagree, which must not pass unnoticed.
func (l *Lister) Each(ctx context.Context, kind, namespace string, fn func(*Object) error) error {
	path, err := listPath(kind, namespace)
	if err != nil {
		return err
	}
	limit := l.PageSize
	if limit <= 0 {
		limit = DefaultPageSize
	}
	ctx, cancel := context.WithCancel(ctx)
	pages := make(chan fetched, 1)
	go l.fetch(ctx, path, limit, pages)
	defer func() {
		// Stop the fetcher and wait for it: it closes pages when it returns.
		cancel()
		for range pages {
		}
	}()
	n := 0
	for f := range pages {
		n++
		if f.err != nil {
			return f.err
		}
		for i, raw := range f.items {
			o, err := decode(kind, raw)
			if err != nil {
				return fmt.Errorf("listing %s (page %d, item %d): %w", path, n, i, err)
			}
			if err := fn(o); err != nil {
				return err
			}
			f.items[i] = nil
		}
	}
	return ctx.Err()
}

// fetched is one page, or the error that ended the list.
type fetched struct {
	items []jsontext.Value
	err   error
}

// fetch sends the pages of a list, in order, until the last one, an error,
// or ctx ends; then it closes pages.
func (l *Lister) fetch(ctx context.Context, path string, limit int64, pages chan<- fetched) {
	defer close(pages)
	send := func(f fetched) bool {
		select {
		case pages <- f:
			return true
		case <-ctx.Done():
			return false
		}
	}
	token := ""
	for n := 0; ; n++ {
		if n == maxPages {
			send(fetched{err: fmt.Errorf("listing %s: more than %d pages of %d", path, maxPages, limit)})
			return
		}
		req := l.Client.Get().AbsPath(path).SetHeader("Accept", "application/json").
			Param("limit", strconv.FormatInt(limit, 10))
		if token != "" {
			req = req.Param("continue", token)
		}
		body, err := req.DoRaw(ctx)
		if n == 0 && apierrors.IsNotFound(err) {
			send(fetched{err: fmt.Errorf("listing %s: %w", path, ErrNotServed)})
			return
		}
		if err != nil {
			send(fetched{err: fmt.Errorf("listing %s (page %d): %w", path, n+1, err)})
			return
		}
		var p page
		if err := json.Unmarshal(body, &p); err != nil {
			send(fetched{err: fmt.Errorf("decoding the list of %s (page %d): %w", path, n+1, err)})
			return
		}
		if !send(fetched{items: p.Items}) {
			return
		}
		if token = p.Metadata.Continue; token == "" {
			return
		}
	}
}

func decode(kind string, raw []byte) (*Object, error) {
	pod, apple, err := review.DecodeObject(kind, raw)
	if err != nil {
		return nil, err
	}
	req := &policy.Request{Kind: kind, Operation: policy.Create, Pod: pod, MyApple: apple}
	// CEL policies read the object, decoded only if one applies.
	req.Unstructured = review.Unstructured(raw, nil, "")
	meta := req.Object()
	if meta.Name == "" {
		return nil, errors.New("an object without metadata.name")
	}
	req.Namespace = meta.Namespace
	return &Object{Kind: kind, Namespace: meta.Namespace, Name: meta.Name, UID: types.UID(meta.UID), Request: req}, nil
}
