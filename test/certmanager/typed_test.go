package certmanager

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// typed converts a rendered object into its Go type, failing the test on a
// field the type does not have: a misspelt field would otherwise render,
// apply (the API server drops unknown fields of built-in types with only a
// warning) and silently do nothing.
func typed[T any](t testing.TB, o *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, out, true); err != nil {
		t.Fatalf("%s: %v", key(o), err)
	}
	return out
}

// findTyped is find then typed.
func findTyped[T any](t testing.TB, objs []*unstructured.Unstructured, kind, name string) *T {
	t.Helper()
	return typed[T](t, find(t, objs, kind, name))
}
