package review

import "testing"

func TestUnstructuredFillsNamespace(t *testing.T) {
	obj, old, err := Unstructured([]byte(`{"metadata":{"name":"a"}}`), []byte(`{}`), "team-a")()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []map[string]any{obj, old} {
		if ns := m["metadata"].(map[string]any)["namespace"]; ns != "team-a" {
			t.Errorf("namespace %v in %v", ns, m)
		}
	}
	if _, _, err := Unstructured([]byte(`{}`), []byte(`[]`), "")(); err == nil {
		t.Error("an old object that is not an object decoded")
	}
	if _, _, err := Unstructured([]byte(`null`), nil, "")(); err == nil {
		t.Error("a null object decoded")
	}
}
