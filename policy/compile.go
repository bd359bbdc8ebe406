package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/distribution/reference"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy/cel"
)

// Policy is a compiled policy: everything a request needs is prepared once
// here, when the policy changes, so evaluation only compares.
type Policy struct {
	Source     Source
	sourceName string // Source.String(), computed once
	// Scope is the namespace the policy applies to, "" for every namespace.
	Scope       string
	Enforcement v1alpha1.Enforcement
	// Version identifies the version of the source in force (its
	// resourceVersion or generation), for status and logs.
	Version string

	pods, apples bool // which kinds it judges
	// controllers are the Pod controllers judged by their template; nil
	// is all of them.
	controllers []Kind
	excluded    []string
	nsSelector  labels.Selector // nil: every namespace
	objSelector labels.Selector // nil: every object

	podRules   *podRules
	appleRules *appleRules

	// nil when the policy has no CEL validations for the kind.
	podCEL, appleCEL *cel.Program

	// rules are the names of the rules it has, as violations carry them.
	rules []string

	// refusal, when set, makes this a stand-in for an invalid policy
	// (StandIn): every object it covers breaks RuleInvalid, saying this.
	refusal string
}

type podRules struct {
	registries      []string // prefixes without the trailing '/'
	registriesSlash []string // the same with it, to compare without allocating
	registryList    string   // for messages
	disallowedTags  []string
	requireDigest   bool
	requiredLabels  []string
	privileged      bool
	hostNamespaces  bool
	hostPath        bool
	runAsNonRoot    bool
	limits          []corev1.ResourceName
}

func (r *podRules) readsImages() bool {
	return len(r.registries) > 0 || len(r.disallowedTags) > 0 || r.requireDigest
}

type appleRules struct {
	colors, sizes       []string
	colorList, sizeList string
	min, max, maxTotal  *int64
}

// CompileOption configures Compile.
type CompileOption func(*compileOptions)

type compileOptions struct {
	cel    *cel.Compiler
	params any
}

// WithCEL compiles the spec's CEL parts with c, params being spec.params
// decoded with int64 integers. Without it a spec with CEL is refused: the
// compiler is expensive, so callers build one and share it.
func WithCEL(c *cel.Compiler, params any) CompileOption {
	return func(o *compileOptions) { o.cel, o.params = c, params }
}

// Compile validates a spec and prepares it for evaluation. scope is the
// namespace it applies to ("" for all), see ConfigMapScope.
func Compile(src Source, scope string, spec *v1alpha1.PolicySpec, opts ...CompileOption) (*Policy, field.ErrorList) {
	var o compileOptions
	for _, opt := range opts {
		opt(&o)
	}
	if spec == nil {
		// An AdmissionPolicy without a spec reaches here from a typed client.
		return nil, field.ErrorList{FieldError("spec", "required")}
	}
	if errs := ValidateSpec(spec); len(errs) > 0 {
		return nil, errs
	}
	p := &Policy{
		Source:      src,
		sourceName:  src.String(),
		Scope:       scope,
		Enforcement: spec.Enforcement,
		excluded:    append([]string(nil), spec.Match.ExcludedNamespaces...),
	}
	if p.Enforcement == "" {
		p.Enforcement = v1alpha1.Deny
	}
	var err error
	if p.nsSelector, err = selector(spec.Match.NamespaceSelector); err != nil {
		return nil, field.ErrorList{FieldError("match.namespaceSelector", err.Error())}
	}
	if p.objSelector, err = selector(spec.Match.ObjectSelector); err != nil {
		return nil, field.ErrorList{FieldError("match.objectSelector", err.Error())}
	}
	if spec.Pods != nil {
		p.podRules = compilePodRules(spec.Pods)
	}
	if spec.MyApples != nil {
		p.appleRules = compileAppleRules(spec.MyApples)
	}
	if cel.HasCEL(spec) {
		if errs := p.compileCEL(spec, &o); len(errs) > 0 {
			return nil, errs
		}
	}
	p.rules = ruleNames(spec)
	p.controllers = controllerKinds(spec.Match.PodControllers)
	p.pods = matchesKind(spec.Match.Kinds, KindPod) && (p.podRules != nil || p.podCEL != nil)
	p.apples = matchesKind(spec.Match.Kinds, KindMyApple) && (p.appleRules != nil || p.appleCEL != nil)
	return p, nil
}

// compileCEL compiles the CEL parts once for each kind the policy matches.
func (p *Policy) compileCEL(spec *v1alpha1.PolicySpec, o *compileOptions) field.ErrorList {
	if o.cel == nil {
		return field.ErrorList{field.InternalError(nil, errors.New("this reader of policies cannot compile CEL expressions"))}
	}
	both := matchesKind(spec.Match.Kinds, KindPod) && matchesKind(spec.Match.Kinds, KindMyApple)
	var errs field.ErrorList
	for _, k := range []Kind{KindPod, KindMyApple} {
		if !matchesKind(spec.Match.Kinds, k) {
			continue
		}
		prog, kerrs := o.cel.Compile(string(k), spec, o.params, cel.Namespaced(p.Scope != ""))
		for _, e := range kerrs {
			if both { // an expression may be right of a Pod and wrong of a MyApple
				e.Detail += fmt.Sprintf(" (judging a %s: set match.kinds to judge one kind only)", k)
			}
		}
		errs = append(errs, kerrs...)
		if k == KindPod {
			p.podCEL = prog
		} else {
			p.appleCEL = prog
		}
	}
	return errs
}

// celFor is the policy's CEL program for kind, or nil.
func (p *Policy) celFor(kind Kind) *cel.Program {
	switch kind {
	case KindPod:
		return p.podCEL
	case KindMyApple:
		return p.appleCEL
	}
	return nil
}

// selector returns nil for an absent or empty selector, so evaluation can
// skip it without building a label set.
func selector(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil || (len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0) {
		return nil, nil
	}
	return metav1.LabelSelectorAsSelector(s)
}

func compilePodRules(r *v1alpha1.PodRules) *podRules {
	c := &podRules{
		disallowedTags: append([]string(nil), r.DisallowedTags...),
		requireDigest:  r.RequireDigest,
		requiredLabels: append([]string(nil), r.RequiredLabels...),
		privileged:     r.ForbidPrivileged,
		hostNamespaces: r.ForbidHostNamespaces,
		hostPath:       r.ForbidHostPath,
		runAsNonRoot:   r.RequireRunAsNonRoot,
	}
	for _, reg := range r.AllowedRegistries {
		p := normaliseRegistry(reg)
		c.registries = append(c.registries, p)
		c.registriesSlash = append(c.registriesSlash, p+"/")
	}
	c.registryList = listForMessage(c.registriesSlash)
	for _, l := range r.RequireResourceLimits {
		c.limits = append(c.limits, corev1.ResourceName(l))
	}
	return c
}

// normaliseRegistry writes an allowedRegistries entry as image names are
// normalised, by the same library ("index.docker.io/" becomes docker.io).
// registryProbe's placeholder components keep the library from adding
// "library/" to the entry's own path. Hosts compare in lower case, as in DNS.
func normaliseRegistry(reg string) string {
	trimmed := strings.TrimSuffix(reg, "/")
	named, err := reference.ParseNormalizedNamed(trimmed + registryProbe)
	if err != nil {
		return strings.ToLower(trimmed)
	}
	return lowerDomain(reference.Domain(named), strings.TrimSuffix(named.Name(), registryProbe))
}

// registryProbe completes an allowedRegistries entry into a repository name.
const registryProbe = "/x/y"

// lowerDomain lowers the case of the domain that name starts with.
func lowerDomain(domain, name string) string {
	if l := strings.ToLower(domain); l != domain {
		return l + name[len(domain):]
	}
	return name
}

func compileAppleRules(r *v1alpha1.MyAppleRules) *appleRules {
	return &appleRules{
		colors:    append([]string(nil), r.AllowedColors...),
		sizes:     append([]string(nil), r.AllowedSizes...),
		colorList: listForMessage(r.AllowedColors),
		sizeList:  listForMessage(r.AllowedSizes),
		min:       r.MinQuantity,
		max:       r.MaxQuantity,
		maxTotal:  r.MaxTotalQuantityPerNamespace,
	}
}

// listedInMessages bounds how many allowlist entries a message names, so a
// long allowlist is not repeated in every violation.
const listedInMessages = 5

// listForMessage names an allowlist in a violation's message.
func listForMessage(items []string) string {
	if len(items) <= listedInMessages {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:listedInMessages], ", ") + fmt.Sprintf(" and %d more", len(items)-listedInMessages)
}

// Judges reports whether the policy has rules for kind.
func (p *Policy) Judges(kind Kind) bool {
	switch kind {
	case KindPod:
		return p.pods
	case KindMyApple:
		return p.apples
	}
	if _, ok := PodControllerOf(kind); ok {
		return p.pods && p.judgesController(kind)
	}
	return false
}

// controllerKinds is a match.podControllers as kinds: nil when absent
// (all), empty when empty (bare Pods only).
func controllerKinds(pc *[]string) []Kind {
	if pc == nil {
		return nil
	}
	kinds := make([]Kind, 0, len(*pc))
	for _, k := range *pc {
		kinds = append(kinds, Kind(k))
	}
	return kinds
}

// judgesController reports whether the policy judges a Pod controller of
// kind by its template, when it judges Pods.
func (p *Policy) judgesController(kind Kind) bool {
	return p.controllers == nil || slices.Contains(p.controllers, kind)
}

// SourceName is the source as users see it: `ConfigMap team-a/registries`.
func (p *Policy) SourceName() string { return p.sourceName }

func (p *Policy) String() string {
	scope := "cluster-wide"
	if p.Scope != "" {
		scope = "namespace " + p.Scope
	}
	return fmt.Sprintf("%s (%s, %s)", p.Source, p.Enforcement, scope)
}

// Rules are the names of the rules the policy has, as its violations carry
// them: pods.requireRunAsNonRoot, validations.require-probes, ...
func (p *Policy) Rules() []string { return p.rules }

// ruleNames lists the rules a spec sets, in the order they are judged.
func ruleNames(spec *v1alpha1.PolicySpec) []string {
	var out []string
	add := func(set bool, rule string) {
		if set {
			out = append(out, rule)
		}
	}
	if r := spec.Pods; r != nil {
		add(len(r.AllowedRegistries) > 0, ruleRegistries)
		add(len(r.DisallowedTags) > 0, ruleTags)
		add(r.RequireDigest, ruleDigest)
		add(len(r.RequiredLabels) > 0, ruleLabels)
		add(r.ForbidPrivileged, rulePrivileged)
		add(r.ForbidHostNamespaces, ruleHostNamespaces)
		add(r.ForbidHostPath, ruleHostPath)
		add(r.RequireRunAsNonRoot, ruleRunAsNonRoot)
		add(len(r.RequireResourceLimits) > 0, ruleLimits)
	}
	if r := spec.MyApples; r != nil {
		add(len(r.AllowedColors) > 0, ruleColors)
		add(len(r.AllowedSizes) > 0, ruleSizes)
		add(r.MinQuantity != nil, ruleMin)
		add(r.MaxQuantity != nil, ruleMax)
		add(r.MaxTotalQuantityPerNamespace != nil, ruleMaxTotal)
	}
	for i, v := range spec.Validations {
		if v.Name != "" {
			out = append(out, "validations."+v.Name)
		} else {
			out = append(out, fmt.Sprintf("validations[%d]", i))
		}
	}
	return out
}
