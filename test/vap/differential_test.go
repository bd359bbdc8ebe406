package vap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/policy-webhook/policy-webhook/check"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/vapimport"
	"github.com/policy-webhook/policy-webhook/test/inprocess"
	"github.com/policy-webhook/policy-webhook/test/promtest"
	"github.com/policy-webhook/policy-webhook/test/testenv"
	"github.com/policy-webhook/policy-webhook/webhook"
)

var (
	gvrPolicy          = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingadmissionpolicies"}
	gvrBinding         = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingadmissionpolicybindings"}
	gvrConfigMap       = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	gvrPod             = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	gvrAdmissionPolicy = schema.GroupVersionResource{Group: "policy.example.com", Version: "v1alpha1", Resource: "admissionpolicies"}
)

// propagation bounds how long a policy change may take to be in force.
const propagation = 30 * time.Second

// divergence is how a corpus policy is known to be judged otherwise by the
// webhook than by the API server's ValidatingAdmissionPolicy, and why. The
// test fails when a divergence listed does not happen, so that the list
// stays true.
type divergence struct {
	// refused: the webhook refuses the imported policy at apply, with an
	// error containing each of these. Nothing else of the case is
	// compared.
	refused []string
	why     string
}

// divergences is empty: every corpus policy is applied both ways and
// judged alike. (Until issue 22, 23 policies were refused here: 9 for a
// cost estimated on worst-case params and objects, 14 for
// `object.spec.containers + object.spec.?initContainers.orValue([])` and
// `orValue({})` on schema fields, type errors with object typed by the
// schema, dyn in VAP; see policy/cel.Compile.)
var divergences = map[string]divergence{}

// The HTTP status of a refusal differs on purpose: the API server answers
// 422 Invalid for a ValidatingAdmissionPolicy's validation without a
// reason (19-docs-max-containers names Forbidden: 403 there), the webhook and check 403
// Forbidden whatever the reason.
const (
	vapCode  = 422
	oursCode = 403
)

// verdict is what one judge said of one Pod.
type verdict struct {
	denied bool
	code   int32
	// message is the first denial's message as the policy wrote it,
	// without the judge's preamble.
	message string
}

func (v verdict) String() string {
	if !v.denied {
		return "admitted"
	}
	return fmt.Sprintf("denied (%d) %q", v.code, v.message)
}

// TestVAPDifferential judges every Pod of pods.yaml under every corpus
// policy three times: by the API server with the policy as a
// ValidatingAdmissionPolicy and binding (params from a ConfigMap), by the
// API server calling the webhook with the AdmissionPolicy import-vap makes
// of it, and by check with that AdmissionPolicy. The verdicts and the
// denials' messages must be equal, but for the divergences listed.
func TestVAPDifferential(t *testing.T) {
	cp := testenv.ControlPlaneForTest(t, devenv.ControlPlaneOptions{Log: logr.Discard()})
	ctx := t.Context()
	if err := cp.EnsureNamespace(ctx, webhook.DefaultPolicyNamespace, nil); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	wh := inprocess.StartForTest(t, inprocess.Options{RestConfig: cp.Config, Log: logr.Discard(), MetricsRegistry: reg})
	if err := devenv.Register(ctx, cp.Client, devenv.WebhookConfiguration(wh.URL, wh.CA.CertPEM(), wh.PolicyNamespace)); err != nil {
		t.Fatal(err)
	}
	if err := devenv.WaitCalled(ctx, cp.Client, wh.PolicyNamespace); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	j := &judge{t: t, dyn: dyn, reg: reg}

	docs, err := check.ReadPaths([]string{"pods.yaml"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var namespaces, pods []check.Document
	for _, d := range docs {
		u := object(t, d.Raw)
		switch d.Kind {
		case "Namespace":
			if err := cp.EnsureNamespace(ctx, u.GetName(), u.GetLabels()); err != nil {
				t.Fatal(err)
			}
			namespaces = append(namespaces, d)
		case policy.KindPod:
			pods = append(pods, d)
		}
	}
	if err := cp.EnsureNamespace(ctx, "vap-params", nil); err != nil {
		t.Fatal(err)
	}
	if len(pods) < 40 {
		t.Fatalf("%d Pods in pods.yaml, want at least 40", len(pods))
	}
	// Without policy every Pod is admitted, and what the API server admits
	// (defaults filled in) is what check judges: both judges see that.
	admitted := j.run(pods, func(d check.Document) (verdict, []byte) { return j.create(d) })
	defaulted := make([]check.Document, len(pods))
	for i, d := range pods {
		if admitted[i].v.denied {
			t.Fatalf("%s: denied without any policy: %v", d.Where, admitted[i].v)
		}
		defaulted[i] = check.Document{Where: d.Where, APIVersion: "v1", Kind: policy.KindPod, Raw: admitted[i].raw}
	}
	probe := object(t, pods[0].Raw) // the first Pod meets every rule
	sentinel := j.newSentinel(probe)

	files, err := filepath.Glob(filepath.Join("corpus", "*.yaml"))
	if err != nil || len(files) < 25 {
		t.Fatalf("%d corpus files (%v), want at least 25", len(files), err)
	}
	compared, refused := 0, 0
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			j.t = t
			defer func() { j.t = nil }()
			div := divergences[filepath.Base(file)]
			caseDocs, err := check.ReadPaths([]string{file}, nil)
			if err != nil {
				t.Fatal(err)
			}
			imported := importCase(t, caseDocs)

			// The API server's ValidatingAdmissionPolicy.
			var created []*unstructured.Unstructured
			t.Cleanup(func() {
				// A case that stopped half-way leaves nothing to judge the next.
				j.t = t
				defer func() { j.t = nil }()
				for _, u := range created {
					_ = j.resource(u).Delete(context.Background(), u.GetName(), metav1.DeleteOptions{})
				}
			})
			for _, d := range caseDocs {
				created = append(created, j.apply(d))
			}
			sentinel.bump(t)
			byVAP := j.run(defaulted, func(d check.Document) (verdict, []byte) { return j.create(d) })
			for i := len(created) - 1; i >= 0; i-- {
				j.remove(created[i])
			}
			created = nil
			sentinel.bump(t)
			denied := 0
			for _, r := range byVAP {
				if r.v.denied {
					denied++
				}
			}
			if denied == 0 || denied == len(pods) {
				t.Errorf("the ValidatingAdmissionPolicy denied %d of %d Pods: a policy that denies all or none proves nothing", denied, len(pods))
			}

			// The webhook, with the imported AdmissionPolicy.
			ap := object(t, imported.yaml)
			_, err = j.dyn.Resource(gvrAdmissionPolicy).Create(t.Context(), ap, metav1.CreateOptions{})
			if len(div.refused) > 0 {
				if err == nil {
					j.remove(ap)
					t.Fatalf("the webhook accepted the imported policy, which it was listed as refusing (%s): take it off the list", div.why)
				}
				for _, want := range div.refused {
					if !strings.Contains(err.Error(), want) {
						t.Fatalf("the webhook refused the imported policy, but not for %q (listed: %s):\n%v", want, div.why, err)
					}
				}
				t.Logf("known divergence: the webhook refuses the policy at apply: %s", div.why)
				refused++
				return
			}
			if err != nil {
				t.Fatalf("the webhook refused the imported policy: %v", err)
			}
			j.waitPolicies(1)
			byWebhook := j.run(defaulted, func(d check.Document) (verdict, []byte) { return j.create(d) })
			j.remove(ap)
			j.waitPolicies(0)

			// check, with the same AdmissionPolicy.
			checkDocs, err := check.ReadDocuments("imported", bytes.NewReader(imported.yaml))
			if err != nil {
				t.Fatal(err)
			}
			checker, err := check.New(checkDocs, check.Options{PolicyNamespace: webhook.DefaultPolicyNamespace})
			if err != nil {
				t.Fatalf("check refuses the imported policy: %v", err)
			}
			for _, d := range namespaces {
				if _, err := checker.Judge(d); err != nil {
					t.Fatal(err)
				}
			}

			for i, d := range defaulted {
				res, err := checker.Judge(d)
				if err != nil {
					t.Fatalf("%s: check: %v", d.Where, err)
				}
				byCheck := checkVerdict(res)
				vap, ours := byVAP[i].v, byWebhook[i].v
				name := object(t, d.Raw).GetName()
				if vap.denied && vap.code == vapCode && ours.code == oursCode {
					vap.code = ours.code
				}
				if vap != ours || vap.denied != byCheck.denied || vap.message != byCheck.message {
					t.Errorf("Pod %s (%s):\n  ValidatingAdmissionPolicy: %v\n  webhook:                   %v\n  check:                     %v",
						name, object(t, d.Raw).GetAnnotations()["vap.test/why"], vap, ours, byCheck)
				}
			}
			compared++
		})
	}
	t.Logf("%d corpus policies x %d Pods compared; %d refused by the webhook at apply (listed)", compared, len(pods), refused)
}

type imported struct{ yaml []byte }

// importCase converts a corpus file with import-vap's conversion, which
// must carry all of it.
func importCase(t *testing.T, docs []check.Document) imported {
	t.Helper()
	in := make([]vapimport.Document, len(docs))
	for i, d := range docs {
		in[i] = vapimport.Document{Where: d.Where, Raw: d.Raw}
	}
	res, err := vapimport.Convert(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.NotCarried) > 0 || len(res.Policies) != 1 {
		t.Fatalf("import-vap made %d policies, not carrying %q", len(res.Policies), res.NotCarried)
	}
	out, err := res.Policies[0].AdmissionPolicy()
	if err != nil {
		t.Fatal(err)
	}
	return imported{yaml: out}
}

// judge creates objects through the API server.
type judge struct {
	t   *testing.T
	dyn dynamic.Interface
	reg prometheus.Gatherer
}

type judged struct {
	v   verdict
	raw []byte
}

// run judges docs four at a time, results in docs' order.
func (j *judge) run(docs []check.Document, one func(check.Document) (verdict, []byte)) []judged {
	out := make([]judged, len(docs))
	var wg sync.WaitGroup
	next := make(chan int)
	for range 4 {
		wg.Go(func() {
			for i := range next {
				v, raw := one(docs[i])
				out[i] = judged{v, raw}
			}
		})
	}
	for i := range docs {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

var (
	vapPreamble  = regexp.MustCompile(`ValidatingAdmissionPolicy '[^']+' with binding '[^']+' denied request: (.*)`)
	oursPreamble = regexp.MustCompile(`AdmissionPolicy \S+ validations\[\d+\]: (.*)`)
)

// create creates a Pod with dryRun=All: its verdict, and when admitted
// the object as the API server would store it.
func (j *judge) create(d check.Document) (verdict, []byte) {
	u := object(j.t, d.Raw)
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "metadata", "uid")
	got, err := j.dyn.Resource(gvrPod).Namespace(u.GetNamespace()).Create(context.Background(), u, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err == nil {
		raw, err := json.Marshal(got.Object)
		if err != nil {
			panic(err) // an object just decoded from JSON
		}
		return verdict{}, raw
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return verdict{denied: true, message: "not a refusal: " + err.Error()}, nil
	}
	msg := status.Status().Message
	v := verdict{denied: true, code: status.Status().Code, message: "unparsed: " + msg}
	for _, re := range []*regexp.Regexp{vapPreamble, oursPreamble} {
		if m := re.FindStringSubmatch(msg); m != nil {
			v.message = m[1]
			break
		}
	}
	return v, nil
}

func checkVerdict(r *check.Result) verdict {
	if r.Allowed {
		return verdict{}
	}
	return verdict{denied: true, code: oursCode, message: r.Violations[0].Message}
}

// apply creates a corpus object.
func (j *judge) apply(d check.Document) *unstructured.Unstructured {
	j.t.Helper()
	u := object(j.t, d.Raw)
	got, err := j.resource(u).Create(j.t.Context(), u, metav1.CreateOptions{})
	if err != nil {
		j.t.Fatalf("%s: creating %s %s: %v", d.Where, u.GetKind(), u.GetName(), err)
	}
	return got
}

func (j *judge) remove(u *unstructured.Unstructured) {
	j.t.Helper()
	if err := j.resource(u).Delete(context.Background(), u.GetName(), metav1.DeleteOptions{}); err != nil {
		j.t.Fatalf("deleting %s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

func (j *judge) resource(u *unstructured.Unstructured) dynamic.ResourceInterface {
	j.t.Helper()
	var gvr schema.GroupVersionResource
	switch u.GetKind() {
	case "ValidatingAdmissionPolicy":
		gvr = gvrPolicy
	case "ValidatingAdmissionPolicyBinding":
		gvr = gvrBinding
	case "ConfigMap":
		return j.dyn.Resource(gvrConfigMap).Namespace(u.GetNamespace())
	case policy.SourceAdmissionPolicy:
		gvr = gvrAdmissionPolicy
	default:
		j.t.Fatalf("no resource known for %s", u.GetKind())
	}
	return j.dyn.Resource(gvr)
}

// waitPolicies waits until the webhook has n policies in force.
func (j *judge) waitPolicies(n int) {
	j.t.Helper()
	testenv.Until(j.t, propagation, fmt.Sprintf("%d policies in force", n), func() bool {
		return int(promtest.Sum(j.t, j.reg, "policy_webhook_policies", nil)) == n
	})
}

// sentinel tells when the API server's ValidatingAdmissionPolicies are in
// force: a policy, binding and param object of its own, changed after
// every change of the corpus's, deny a probe Pod labelled with the
// generation once the API server has read all three anew, and so every
// change made before them (each kind is read by one informer, in order).
type sentinel struct {
	j     *judge
	probe *unstructured.Unstructured
	gen   int
}

const sentinelLabel = "vap.test/sentinel"

func (j *judge) newSentinel(probe *unstructured.Unstructured) *sentinel {
	s := &sentinel{j: j, probe: probe.DeepCopy()}
	s.bump(j.t)
	return s
}

func (s *sentinel) bump(t *testing.T) {
	t.Helper()
	s.gen++
	gen := strconv.Itoa(s.gen)
	ctx := t.Context()
	cm := object(t, []byte(fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"sentinel-%s","namespace":"vap-params"},"data":{"gen":%q}}`, gen, gen)))
	vap := object(t, []byte(fmt.Sprintf(`{"apiVersion":"admissionregistration.k8s.io/v1","kind":"ValidatingAdmissionPolicy","metadata":{"name":"zz-sentinel"},
"spec":{"paramKind":{"apiVersion":"v1","kind":"ConfigMap"},
"matchConstraints":{"resourceRules":[{"apiGroups":[""],"apiVersions":["v1"],"operations":["CREATE"],"resources":["pods"]}]},
"validations":[{"expression":"params.data.gen != '%s'","message":"sentinel %s"}]}}`, gen, gen)))
	binding := object(t, []byte(fmt.Sprintf(`{"apiVersion":"admissionregistration.k8s.io/v1","kind":"ValidatingAdmissionPolicyBinding","metadata":{"name":"zz-sentinel"},
"spec":{"policyName":"zz-sentinel","validationActions":["Deny"],
"paramRef":{"name":"sentinel-%s","namespace":"vap-params","parameterNotFoundAction":"Allow"},
"matchResources":{"objectSelector":{"matchLabels":{%q:%q}}}}}`, gen, sentinelLabel, gen)))
	for _, u := range []*unstructured.Unstructured{cm, vap, binding} {
		r := s.j.resource(u)
		cur, err := r.Get(ctx, u.GetName(), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = r.Create(ctx, u, metav1.CreateOptions{})
		case err == nil:
			u.SetResourceVersion(cur.GetResourceVersion())
			_, err = r.Update(ctx, u, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Fatalf("sentinel generation %s: %s: %v", gen, u.GetKind(), err)
		}
	}
	p := s.probe.DeepCopy()
	p.SetName("sentinel-probe")
	labels := p.GetLabels()
	labels[sentinelLabel] = gen
	p.SetLabels(labels)
	raw, err := json.Marshal(p.Object)
	if err != nil {
		t.Fatal(err)
	}
	want := "sentinel " + gen
	testenv.Eventually(t, propagation, "the ValidatingAdmissionPolicies in force (sentinel "+gen+")", func() error {
		v, _ := s.j.create(check.Document{Raw: raw})
		if v.message != want {
			return fmt.Errorf("the probe Pod: %v", v)
		}
		return nil
	})
	if s.gen > 1 {
		if err := s.j.dyn.Resource(gvrConfigMap).Namespace("vap-params").Delete(ctx, "sentinel-"+strconv.Itoa(s.gen-1), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

func object(t testing.TB, raw []byte) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(raw, &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}
