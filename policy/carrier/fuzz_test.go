package carrier

import (
	"encoding/json"
	"testing"

	"github.com/policy-webhook/policy-webhook/policy"
)

// FuzzParseSpec: parsing never panics, fails the same way for both
// carriers and the same way twice, and a spec it accepts compiles and reads
// back the same once written out, as the API server stores an
// AdmissionPolicy's spec. Seeds are in testdata/fuzz/FuzzParseSpec.
func FuzzParseSpec(f *testing.F) {
	f.Add([]byte(designExample))
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, errs := ParseSpec(data)
		_, cmErrs := parseConfigMapData(map[string]string{policy.ConfigMapDataKey: string(data)})
		_, apErrs := parseAdmissionPolicySpec(data)
		if (len(errs) == 0) != (len(cmErrs) == 0) || (len(errs) == 0) != (len(apErrs) == 0) {
			t.Fatalf("carriers disagree: ParseSpec %v, ConfigMap %v, AdmissionPolicy %v", errs, cmErrs, apErrs)
		}
		if len(errs) > 0 {
			if spec != nil {
				t.Fatal("a spec came with the errors")
			}
			if _, again := ParseSpec(data); policy.ErrorText(again) != policy.ErrorText(errs) {
				t.Fatalf("second parse: %v, first: %v", again, errs)
			}
			return
		}
		if _, errs := policy.Compile(policy.Source{Kind: policy.SourceAdmissionPolicy, Name: "fuzz"}, "", spec); len(errs) > 0 {
			t.Fatalf("ParseSpec accepted a spec Compile refuses: %v", policy.ErrorText(errs))
		}
		js, err := json.Marshal(spec)
		if err != nil {
			t.Fatal(err)
		}
		again, errs := ParseSpec(js)
		if len(errs) > 0 {
			t.Fatalf("spec written as %s does not parse: %v", js, policy.ErrorText(errs))
		}
		if js2, _ := json.Marshal(again); string(js2) != string(js) {
			t.Fatalf("spec written as %s reads back as %s", js, js2)
		}
	})
}
