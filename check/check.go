package check

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/cel"
	"github.com/policy-webhook/policy-webhook/review"
)

// Result is the verdict on one judged object.
type Result struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Allowed   bool   `json:"allowed"`
	// Warnings are what kubectl would print as warnings: the Warn violations.
	Warnings []string `json:"warnings"`
	// Violations lists every violation, of every enforcement.
	Violations []policy.Violation `json:"violations"`
	// Candidate lists, with Options.Candidate, where a policy's candidate
	// would decide otherwise than the policy (never "same").
	Candidate []Disagreement `json:"candidate,omitempty"`
}

// Disagreement is one policy whose candidate would decide an object
// otherwise than the policy does.
type Disagreement struct {
	// Source is the policy's, as in a violation; Version the candidate's.
	Source  string `json:"source"`
	Version string `json:"version,omitempty"`
	// Outcome is would_deny, would_allow or would_warn.
	Outcome string `json:"outcome"`
	// Violation is what the outcome rests on (see policy.CandidateResult).
	Violation *policy.Violation `json:"violation,omitempty"`
}

// String is `<source>@<version> would deny: <violation>`.
func (d *Disagreement) String() string {
	s := d.Source
	if d.Version != "" {
		s += "@" + d.Version
	}
	s += " " + strings.ReplaceAll(d.Outcome, "_", " ")
	if d.Violation != nil {
		s += ": " + d.Violation.Rule
		if d.Violation.Field != "" {
			s += " " + d.Violation.Field
		}
		s += ": " + d.Violation.Message
	}
	return s
}

// WouldDeny reports whether a candidate would deny what the policies admit.
func (r *Result) WouldDeny() bool {
	for i := range r.Candidate {
		if r.Candidate[i].Outcome == v1alpha1.OutcomeWouldDeny {
			return true
		}
	}
	return false
}

// Verdict is DENY, WARN or ALLOW.
func (r *Result) Verdict() string {
	switch {
	case !r.Allowed:
		return "DENY"
	case len(r.Warnings) > 0:
		return "WARN"
	}
	return "ALLOW"
}

// Checker judges objects one after another against a fixed set of policies,
// keeping the cluster state the admitted ones create.
type Checker struct {
	opts    Options
	set     *policy.Set
	loaded  map[policy.Source]bool
	cluster *Cluster
	// applied holds each object's last admitted version: applying it again is an UPDATE.
	applied   map[objectKey][]byte
	generated int
}

type objectKey struct {
	kind            policy.Kind
	namespace, name string
}

// New compiles the policies among policyDocs. An invalid policy is an error
// naming its document and the field paths at fault.
func New(policyDocs []Document, opts Options) (*Checker, error) {
	if opts.DefaultNamespace == "" {
		opts.DefaultNamespace = "default"
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.MaxExceptionDuration == 0 {
		opts.MaxExceptionDuration = DefaultMaxExceptionDuration
	}
	cluster := NewCluster()
	policies, candidates, exceptions, loaded, err := loadPolicies(policyDocs, &opts, cluster)
	if err != nil {
		return nil, err
	}
	bare := policy.NewSet(policies)
	compiled := make([]*policy.Exception, 0, len(exceptions))
	for _, x := range exceptions {
		// A rule the named policy does not have is as invalid here as it is
		// refused by the webhook; a policy not given is only noted.
		errs, warnings := x.compiled.CheckRules(x.spec.Spec.Exceptions, bare.Policy)
		if len(errs) > 0 {
			return nil, fmt.Errorf("%s: %w", x.where, &policy.InvalidError{Source: policy.Source{Kind: policy.SourcePolicyException, Namespace: x.spec.Namespace, Name: x.spec.Name}, Errs: errs})
		}
		for _, w := range warnings {
			opts.notef("%s: %s", x.where, w)
		}
		if !x.compiled.Active(opts.Now) {
			opts.notef("%s: %s expired at %s: it lifts nothing", x.where, x.compiled, x.compiled.ExpiresAt.UTC().Format(time.RFC3339))
		}
		compiled = append(compiled, x.compiled)
	}
	return &Checker{
		opts:    opts,
		set:     policy.NewSet(policies, policy.WithCandidates(candidates), policy.WithExceptions(policy.NewExceptionSet(compiled))),
		loaded:  loaded,
		cluster: cluster,
		applied: map[objectKey][]byte{},
	}, nil
}

// Policies is how many policies were loaded.
func (c *Checker) Policies() int { return c.set.Len() }

// Judge judges one document. It returns nil for Namespaces (recorded for
// namespaceSelector) and other kinds (noted).
func (c *Checker) Judge(d Document) (*Result, error) {
	c2, controller := policy.PodControllerOf(policy.Kind(d.Kind))
	switch {
	case d.Kind == policy.KindPod && d.APIVersion == "v1",
		d.Kind == policy.KindMyApple && d.APIVersion == policy.GroupMyApple+"/v1",
		controller && d.APIVersion == c2.APIVersion():
		return c.judgeObject(d)
	case d.Kind == "AdmissionReview" && d.APIVersion == admissionv1.SchemeGroupVersion.String():
		return c.judgeReview(d)
	case d.Kind == policy.SourcePolicyException && d.APIVersion == v1alpha1.GroupVersion.String() && !c.isLoadedPolicy(d):
		return c.judgeException(d)
	case d.Kind == "Namespace" && d.APIVersion == "v1":
		var m objectMeta
		if err := json.Unmarshal(d.Raw, &m); err != nil {
			return nil, fmt.Errorf("%s: %w", d.Where, err)
		}
		c.cluster.SetNamespace(m.Metadata.Name, m.Metadata.Labels, m.Metadata.Annotations)
		return nil, nil
	}
	if !c.isLoadedPolicy(d) {
		c.opts.notef("%s: skipping %s %s: only Pods, Pod controllers (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob, ReplicationController), MyApples, Namespaces and AdmissionReviews are judged", d.Where, d.APIVersion, d.Kind)
	}
	return nil, nil
}

// isLoadedPolicy tells a policy object that was also given with -p, which
// needs no note: passing a whole directory as both is the common case.
func (c *Checker) isLoadedPolicy(d Document) bool {
	var m objectMeta
	if json.Unmarshal(d.Raw, &m) != nil {
		return false
	}
	src := policy.Source{Kind: d.Kind, Name: m.Metadata.Name}
	if d.Kind == policy.SourceConfigMap || d.Kind == policy.SourcePolicyException {
		src.Namespace = m.Metadata.Namespace
		if src.Namespace == "" {
			src.Namespace = c.opts.DefaultNamespace
		}
	}
	return c.loaded[src]
}

// judgeObject judges a Pod, a MyApple or a Pod controller as `kubectl
// apply` would submit it: a CREATE, or an UPDATE of the version admitted
// earlier in the input.
func (c *Checker) judgeObject(d Document) (*Result, error) {
	var m objectMeta
	if err := json.Unmarshal(d.Raw, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", d.Where, err)
	}
	if m.Metadata.Name == "" && m.Metadata.GenerateName == "" {
		return nil, fmt.Errorf("%s: %s: metadata.name: required", d.Where, d.Kind)
	}
	ns := m.Metadata.Namespace
	if ns == "" {
		ns = c.opts.DefaultNamespace
	}
	// applied holds no unnamed objects, so generateName ones are CREATEs.
	oldRaw := c.applied[objectKey{policy.Kind(d.Kind), ns, m.Metadata.Name}]
	req, err := review.Decode(policy.Kind(d.Kind), d.Raw, oldRaw, ns)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.Where, err)
	}
	return c.decide(req, d.Raw), nil
}

// judgeReview judges an AdmissionReview exactly as the webhook would.
func (c *Checker) judgeReview(d Document) (*Result, error) {
	in, err := review.Read(d.Raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.Where, err)
	}
	ar := in.Request
	kind := review.KindOf(ar)
	switch {
	case kind == "":
		c.opts.notef("%s: skipping AdmissionReview for %s: only pods and myapples are judged", d.Where, ar.Resource.String())
		return nil, nil
	case !review.Judged(kind, ar):
		if kind == policy.KindMyApple && ar.Operation == admissionv1.Delete && ar.SubResource == "" {
			c.cluster.DeleteMyApple(ar.Namespace, ar.Name)
		}
		c.opts.notef("%s: skipping AdmissionReview %s %s: the webhook judges CREATE and UPDATE of the object itself and of pods/ephemeralcontainers", d.Where, ar.Operation, resourceLabel(ar))
		return nil, nil
	}
	req, err := review.NewRequest(kind, ar)
	if err != nil {
		return nil, fmt.Errorf("%s: AdmissionReview: %w", d.Where, err)
	}
	if req.Namespace == "" {
		req.Namespace = c.opts.DefaultNamespace
	}
	return c.decide(req, ar.Object.Raw), nil
}

// judgeException judges a PolicyException as the webhook judges its
// creation at Options.Now: refused, with its field paths, when invalid,
// expiring in the past or too far ahead, or naming a rule the policy does
// not have.
func (c *Checker) judgeException(d Document) (*Result, error) {
	x, err := readException(d, c.opts.DefaultNamespace)
	if err != nil {
		return nil, err
	}
	_, warnings, errs := policy.JudgeException(x, c.opts.PolicyNamespace, c.opts.Now, c.opts.MaxExceptionDuration, c.set.WithoutExceptions())
	src := policy.Source{Kind: policy.SourcePolicyException, Namespace: x.Namespace, Name: x.Name}
	r := &Result{Kind: policy.SourcePolicyException, Namespace: x.Namespace, Name: x.Name, Allowed: len(errs) == 0, Warnings: warnings, Violations: []policy.Violation{}}
	if r.Warnings == nil {
		r.Warnings = []string{}
	}
	for _, e := range errs {
		r.Violations = append(r.Violations, policy.Violation{
			Source: src.String(), Rule: policy.RuleInvalid, Enforcement: v1alpha1.Deny, Field: e.Field, Message: e.ErrorBody(),
		})
	}
	return r, nil
}

// decide judges req and records what it admits, raw being the object as given.
func (c *Checker) decide(req *policy.Request, raw []byte) *Result {
	req.Now = c.opts.Now
	d := c.set.Evaluate(req, c.cluster)
	if name := req.Name(); d.Allowed && name != "" && !strings.HasSuffix(name, "*") {
		c.applied[objectKey{req.ObjectKind(), req.Namespace, name}] = raw
	}
	if d.Allowed && req.MyApple != nil {
		name := req.MyApple.Name
		if name == "" {
			// generateName: the API server would pick a fresh name.
			c.generated++
			name = fmt.Sprintf("%s<generated-%d>", req.MyApple.GenerateName, c.generated)
		}
		sp := req.MyApple.Spec
		c.cluster.SetMyApple(req.Namespace, cel.Apple{Name: name, Color: sp.Color, Size: sp.Size, Quantity: sp.Quantity})
	}
	return newResult(string(req.ObjectKind()), req.Namespace, req.Name(), &d)
}

// newResult reports empty lists as [], not null, in JSON.
func newResult(kind, namespace, name string, d *policy.Decision) *Result {
	r := &Result{Kind: kind, Namespace: namespace, Name: name, Allowed: d.Allowed, Warnings: d.Warnings(), Violations: d.Violations}
	if r.Warnings == nil {
		r.Warnings = []string{}
	}
	if r.Violations == nil {
		r.Violations = []policy.Violation{}
	}
	for _, c := range d.Candidates {
		if c.Outcome == v1alpha1.OutcomeSame {
			continue
		}
		version := c.Candidate.Version
		if version == "0" {
			version = "" // a file's AdmissionPolicy has no generation yet
		}
		r.Candidate = append(r.Candidate, Disagreement{Source: c.Candidate.SourceName(), Version: version, Outcome: c.Outcome, Violation: c.Violation})
	}
	return r
}

func resourceLabel(r *admissionv1.AdmissionRequest) string {
	if r.SubResource == "" {
		return r.Resource.Resource
	}
	return r.Resource.Resource + "/" + r.SubResource
}
