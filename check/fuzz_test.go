package check

import (
	"bytes"
	"io"
	"testing"
)

// FuzzReadDocuments feeds arbitrary files through the reader and the
// checker: either an error comes back or every document is judged, and
// nothing panics.
func FuzzReadDocuments(f *testing.F) {
	f.Add([]byte(testPolicies))
	f.Add([]byte("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers: [{name: a, image: nginx}]\n"))
	f.Add([]byte(`[{"apiVersion":"stable.example.com/v1","kind":"MyApple","metadata":{"name":"a"},"spec":{"quantity":3}}]`))
	f.Add([]byte("apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: x}}\n"))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","resource":{"resource":"pods"},"operation":"CREATE","object":{"kind":"Pod"}}}`))
	c := newChecker(f, io.Discard)
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, err := ReadDocuments("fuzz", bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, d := range docs {
			if d.Kind == "" || len(d.Raw) == 0 {
				t.Fatalf("document without kind or body: %+v", d)
			}
			_, _ = c.Judge(d)
		}
		if _, err := New(docs, Options{}); err != nil {
			return
		}
	})
}
