package vapimport_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/check"
	"github.com/policy-webhook/policy-webhook/policy/vapimport"
)

// FuzzConvert: whatever the input, Convert returns an error or a result
// (never panics), and every policy it converts is written as YAML that
// reads back as the same spec.
func FuzzConvert(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("..", "..", "test", "vap", "corpus", "*.yaml"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no corpus to seed from: %v", err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(vapHeader + podRules + validation + bindingOf(denyBinding)))
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, err := check.ReadDocuments("fuzz", bytes.NewReader(data))
		if err != nil {
			return
		}
		res, err := vapimport.Convert(toImport(docs))
		if err != nil {
			return
		}
		for _, p := range res.Policies {
			out, err := p.AdmissionPolicy()
			if err != nil {
				t.Fatal(err)
			}
			var back v1alpha1.AdmissionPolicy
			if err := yaml.UnmarshalStrict(out, &back); err != nil {
				t.Fatalf("the output does not read back: %v\n%s", err, out)
			}
			if got, want := must(json.Marshal(back.Spec)), must(json.Marshal(p.Spec)); !bytes.Equal(got, want) {
				t.Fatalf("the spec read back is\n%s\nnot\n%s", got, want)
			}
		}
	})
}
