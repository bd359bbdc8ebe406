package review

import (
	"reflect"
	"sync"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
	utiljson "k8s.io/apimachinery/pkg/util/json"

	"github.com/policy-webhook/policy-webhook/policy/api/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy/cel"
)

// cutPolicies give the Fields the decoder is checked with, each the
// validations of one policy: paths, loops through lists, maps read whole,
// nothing, everything.
var cutPolicies = [][]string{
	{"object.spec.containers.all(c, has(c.livenessProbe) && c.image != '')"},
	{"object.metadata.?labels.?app.orValue('') != ''", "!has(object.spec.hostNetwork)"},
	{"size(object.spec.containers) < 5", "object.spec.volumes.all(v, v.name != '')"},
	{"object.metadata.labels.all(k, k != '')", "object.spec.containers[0].resources.limits == {'cpu': '1'}"},
	{"object.spec.containers[1].ports.all(p, p.containerPort > 0)", "object.spec.containers.all(c, has(c.env[0].valueFrom))"},
	{"request.operation == 'CREATE'"},
	{"object == oldObject"},
}

var cutFields = sync.OnceValues(func() ([]*cel.Fields, error) {
	c, err := cel.NewCompiler()
	if err != nil {
		return nil, err
	}
	var out []*cel.Fields
	for _, exprs := range cutPolicies {
		spec := &v1alpha1.PolicySpec{}
		for _, e := range exprs {
			spec.Validations = append(spec.Validations, v1alpha1.Validation{Expression: e})
		}
		p, errs := c.Compile(cel.KindPod, spec, nil)
		if len(errs) > 0 {
			return nil, errs.ToAggregate()
		}
		out = append(out, p.Fields())
	}
	return out, nil
})

func fields(tb testing.TB) []*cel.Fields {
	tb.Helper()
	fs, err := cutFields()
	if err != nil {
		tb.Fatal(err)
	}
	return fs
}

// checkCut asserts the decoder gives what cutting the whole decoded object
// gives, for every Fields, on any JSON the reference decodes.
func checkCut(t *testing.T, raw []byte) {
	var whole map[string]any
	if !jsontext.Value(raw).IsValid(jsontext.AllowDuplicateNames(true)) || utiljson.Unmarshal(raw, &whole) != nil || whole == nil {
		for _, f := range fields(t) {
			_, _ = decodeUnstructured(raw, "", f) // must not panic
		}
		return
	}
	for i, f := range fields(t) {
		got, err := decodeUnstructured(raw, "", f)
		if err != nil {
			t.Fatalf("fields %d (%s): %v, decoding %q", i, f, err, raw)
		}
		if want := f.Cut(whole); !reflect.DeepEqual(got, want) {
			t.Fatalf("fields %d (%s): decoded\n%#v\nwant, cut from the whole object,\n%#v\nfrom %q", i, f, got, want, raw)
		}
	}
}

func TestDecodeCut(t *testing.T) {
	for name, raw := range seeds(t) {
		t.Run(name, func(t *testing.T) { checkCut(t, raw) })
	}
	for _, raw := range []string{
		`{}`,
		`{"spec":{"containers":{"image":"x"}},"metadata":{"labels":["app"]}}`,
		`{"spec":{"containers":[null,1,"a",[],{"image":"r/x","livenessProbe":{"exec":{"command":["a"]}},"ports":[{"containerPort":80},{"containerPort":1e3},{"containerPort":-0}]}]}}`,
		`{"metadata":{"labels":{"app":"web","a\"b":"c","\u0061pp2":"x"}},"spec":{"hostNetwork":null,"volumes":[{"name":"v"}]}}`,
		`{"spec":{"containers":[{"resources":{"limits":{"cpu":1.5,"big":12345678901234567890}}},{"env":[{"name":"a","valueFrom":{}}]}]}}`,
		`{"spe\u0063":{"containers":[{"image":"escaped name"}]}}`,
		`{"spec":{"hostNetwork":true,"hostNetwork":false,"containers":[{"image":"a","image":"b"}],"containers":[{"image":"c","livenessProbe":{"a":1,"a":2}}]}}`,
	} {
		t.Run(raw, func(t *testing.T) { checkCut(t, []byte(raw)) })
	}
}

// FuzzDecodeCut: decoding an object cut to an expression's fields gives
// what cutting the whole decoded object gives, and never panics.
//
//	go test ./review -run '^$' -fuzz FuzzDecodeCut -fuzztime 60s
func FuzzDecodeCut(f *testing.F) {
	for _, raw := range seeds(f) {
		f.Add(raw)
	}
	f.Add([]byte(`{"spec":{"containers":[null,{"image":"r/x","ports":[{"containerPort":1e3}]}]},"metadata":{"labels":["app"]}}`))
	fields(f)
	f.Fuzz(checkCut)
}

// Unstructured decodes once for the fields it is first asked for, and
// anew for others: a request judged by two sets gets what each reads.
func TestUnstructuredDecodesPerFields(t *testing.T) {
	raw := []byte(`{"metadata":{"name":"a","labels":{"app":"web"}},"spec":{"hostNetwork":true,"containers":[{"image":"r/x","livenessProbe":{}}]}}`)
	fs := fields(t)
	decode := Unstructured(raw, raw, "team-a")
	first, firstOld, err := decode(fs[0])
	if err != nil {
		t.Fatal(err)
	}
	again, _, _ := decode(fs[0])
	if reflect.ValueOf(again).Pointer() != reflect.ValueOf(first).Pointer() {
		t.Error("decoded twice for the same fields")
	}
	if firstOld == nil {
		t.Error("no old object on UPDATE")
	}
	other, _, err := decode(fs[1])
	if err != nil {
		t.Fatal(err)
	}
	var whole map[string]any
	if err := utiljson.Unmarshal(raw, &whole); err != nil {
		t.Fatal(err)
	}
	for i, got := range []map[string]any{first, other} {
		// The cut, and the namespace filled in as -n would.
		want := fs[i].Cut(whole).(map[string]any)
		md, _ := want["metadata"].(map[string]any)
		if md == nil {
			md = map[string]any{}
			want["metadata"] = md
		}
		md["namespace"] = "team-a"
		if !reflect.DeepEqual(got, want) {
			t.Errorf("fields %d (%s): got %v, want %v", i, fs[i], got, want)
		}
	}
}
