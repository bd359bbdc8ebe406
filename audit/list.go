package audit

import (
	"bytes"
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
// continue token cannot keep a sweep going for ever.
const maxPages = 20000

// Object is one existing Pod or MyApple, decoded as an admission decodes it.
type Object struct {
	Kind      string
	Namespace string
	Name      string
	UID       types.UID
	// Request judges the object as a CREATE.
	Request *policy.Request
}

// Lister reads every Pod or MyApple of the cluster in pages, decoding each
// with the admission's own decoder.
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

// Kinds are the kinds a sweep reads, in the order it reads them: Pods,
// MyApples, then the Pod controllers, judged by their templates.
func Kinds() []string {
	kinds := []string{policy.KindPod, policy.KindMyApple}
	for _, c := range policy.PodControllers() {
		kinds = append(kinds, string(c.Kind))
	}
	return kinds
}

// APIVersion is the apiVersion objects of a kind Kinds names carry.
func APIVersion(kind string) string {
	switch kind {
	case policy.KindPod:
		return "v1"
	case policy.KindMyApple:
		return policy.GroupMyApple + "/" + policy.VersionMyApple
	}
	c, _ := policy.PodControllerOf(policy.Kind(kind))
	return c.APIVersion()
}

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
	if c, ok := policy.PodControllerOf(policy.Kind(kind)); ok {
		if c.Group == "" {
			return "/api/" + c.Version + "/" + ns + c.Resource, nil
		}
		return "/apis/" + c.Group + "/" + c.Version + "/" + ns + c.Resource, nil
	}
	return "", fmt.Errorf("kind %q is not judged: only Pods, MyApples and Pod controllers are", kind)
}

// page is one list response, read as it arrives.
type page struct {
	Metadata struct {
		Continue string `json:"continue"`
	} `json:"metadata"`
	Items items `json:"items"`
}

// items streams the items of a list to each, decoded by the admission's
// decoder, one at a time: a page is never held whole.
type items struct {
	kind string
	each func(*Object) error
	n    int
}

func (it *items) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	switch tok, err := dec.ReadToken(); {
	case err != nil:
		return err
	case tok.Kind() == 'n':
		return nil // no items
	case tok.Kind() != '[':
		return fmt.Errorf("items is a JSON %v, not an array", tok.Kind())
	}
	for dec.PeekKind() != ']' {
		raw, err := dec.ReadValue()
		if err != nil {
			return err
		}
		// The decoder reuses its buffer; CEL may read the object later.
		o, err := decode(it.kind, bytes.Clone(raw))
		if err != nil {
			return fmt.Errorf("item %d: %w", it.n, err)
		}
		it.n++
		if err := it.each(o); err != nil {
			return err
		}
	}
	_, err := dec.ReadToken()
	return err
}

// Each calls fn with every object of kind in namespace ("" for the whole
// cluster), decoded a few ahead of fn so that listing and judging overlap.
// An object that does not decode is an error: the decoder and the API
// disagree, which must not pass unnoticed.
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
	objects := make(chan listed, objectsAhead)
	go l.fetch(ctx, kind, path, limit, objects)
	defer func() {
		// Stop the fetcher and wait for it: it closes objects when it returns.
		cancel()
		for range objects {
		}
	}()
	for o := range objects {
		if o.err != nil {
			return o.err
		}
		if err := fn(o.object); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// objectsAhead is how many decoded objects the fetcher may hold beyond
// the one being judged.
const objectsAhead = 64

// listed is one object, or the error that ended the list.
type listed struct {
	object *Object
	err    error
}

// errStopped ends reading a page when the list is over for its reader.
var errStopped = errors.New("the list was stopped")

// fetch sends the objects of a list, in order, until the last one, an
// error, or ctx ends; then it closes objects.
func (l *Lister) fetch(ctx context.Context, kind, path string, limit int64, objects chan<- listed) {
	defer close(objects)
	send := func(o listed) bool {
		select {
		case objects <- o:
			return true
		case <-ctx.Done():
			return false
		}
	}
	token := ""
	for n := 0; ; n++ {
		if n == maxPages {
			send(listed{err: fmt.Errorf("listing %s: more than %d pages of %d", path, maxPages, limit)})
			return
		}
		req := l.Client.Get().AbsPath(path).SetHeader("Accept", "application/json").
			Param("limit", strconv.FormatInt(limit, 10))
		if token != "" {
			req = req.Param("continue", token)
		}
		body, err := req.Stream(ctx)
		if n == 0 && apierrors.IsNotFound(err) {
			send(listed{err: fmt.Errorf("listing %s: %w", path, ErrNotServed)})
			return
		}
		if err != nil {
			send(listed{err: fmt.Errorf("listing %s (page %d): %w", path, n+1, err)})
			return
		}
		p := page{Items: items{kind: kind, each: func(o *Object) error {
			if !send(listed{object: o}) {
				return errStopped
			}
			return nil
		}}}
		err = json.UnmarshalRead(body, &p)
		body.Close()
		switch {
		case errors.Is(err, errStopped):
			return
		case err != nil:
			send(listed{err: fmt.Errorf("listing %s (page %d, after %d items): %w", path, n+1, p.Items.n, err)})
			return
		}
		if token = p.Metadata.Continue; token == "" {
			return
		}
	}
}

// decode reads a listed object as admission would read its CREATE; CEL
// policies decode it again only if one applies.
func decode(kind string, raw []byte) (*Object, error) {
	req, err := review.Decode(policy.Kind(kind), raw, nil, "")
	if err != nil {
		return nil, err
	}
	meta := req.Object()
	if req.Controller != nil {
		meta = &req.Controller.Meta
	}
	if meta.Name == "" {
		return nil, errors.New("an object without metadata.name")
	}
	return &Object{Kind: kind, Namespace: meta.Namespace, Name: meta.Name, UID: types.UID(meta.UID), Request: req}, nil
}
