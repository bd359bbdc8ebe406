package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"

	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
)

// SourcePolicyException is the kind of the objects that lift rules.
const SourcePolicyException = "PolicyException"

// Exception is a compiled PolicyException: which rules of which policies it
// lifts, for which objects, until when. Whether it applies is decided per
// request against the request's clock (Request.Now), so that it stops
// applying at ExpiresAt exactly, with no write and no rebuild.
type Exception struct {
	Namespace, Name string
	// Reason is the exception's spec.reason.
	Reason string
	// ExpiresAt is the first instant at which it no longer applies.
	ExpiresAt time.Time
	// Version is its resourceVersion or generation, for logs and status.
	Version string
	// Scope is the namespace whose objects it covers, "" for every one (an
	// exception in the webhook's own namespace).
	Scope string

	ref         string // "team-a/legacy-root"
	entries     []exceptionEntry
	kinds       []Kind   // nil: every kind
	names       []string // globs; nil: every name
	objSelector labels.Selector
	nsSelector  labels.Selector
}

type exceptionEntry struct {
	source string // Source.String() of the policy, as violations name it
	rules  []string
}

// Ref is how users see the exception: "team-a/legacy-root".
func (x *Exception) Ref() string { return x.ref }

func (x *Exception) String() string { return SourcePolicyException + " " + x.ref }

// Active reports whether the exception applies at now: before ExpiresAt.
func (x *Exception) Active(now time.Time) bool { return now.Before(x.ExpiresAt) }

// Expiry is ExpiresAt as warnings print it: the date alone at midnight
// UTC, else the instant (RFC 3339).
func (x *Exception) Expiry() string { return FormatExpiry(x.ExpiresAt) }

// FormatExpiry writes an expiry as warnings print it.
func FormatExpiry(t time.Time) string {
	t = t.UTC()
	if t.Equal(t.Truncate(24 * time.Hour)) {
		return t.Format(time.DateOnly)
	}
	return t.Format(time.RFC3339)
}

// Policies names the policies the exception lifts rules of, each with its
// rules, in spec order.
func (x *Exception) Policies() []ExceptedPolicy {
	out := make([]ExceptedPolicy, len(x.entries))
	for i, e := range x.entries {
		out[i] = ExceptedPolicy{Source: e.source, Rules: slices.Clone(e.rules)}
	}
	return out
}

// ExceptedPolicy is one policy an exception names, and its rules lifted.
type ExceptedPolicy struct {
	Source string
	Rules  []string
}

// unexceptable are rules no exception lifts: the namespace quota (raise the
// limit instead), and the refusals that say a policy could not judge at all.
var unexceptable = []string{ruleMaxTotal, RuleBudget, RuleInvalid}

// CompileException validates what a PolicyException says, whatever the
// clock, and prepares it for evaluation. policyNamespace is the webhook's
// own namespace, whose exceptions cover every namespace. Field paths start
// at spec.
func CompileException(namespace, name, version string, spec *v1alpha1.PolicyExceptionSpec, policyNamespace string) (*Exception, field.ErrorList) {
	root := field.NewPath("spec")
	if spec == nil {
		return nil, field.ErrorList{field.Required(root, "a PolicyException needs a spec")}
	}
	var errs field.ErrorList
	x := &Exception{Namespace: namespace, Name: name, Version: version, Reason: spec.Reason, ExpiresAt: spec.ExpiresAt.Time, ref: namespace + "/" + name}
	if namespace != policyNamespace {
		x.Scope = namespace
	}
	if strings.TrimSpace(spec.Reason) == "" {
		errs = append(errs, field.Required(root.Child("reason"), "say why the rules are lifted (a ticket, a plan)"))
	} else if len(spec.Reason) > v1alpha1.MaxExceptionReasonBytes {
		errs = append(errs, field.TooLong(root.Child("reason"), "", v1alpha1.MaxExceptionReasonBytes))
	}
	if spec.ExpiresAt.IsZero() {
		errs = append(errs, field.Required(root.Child("expiresAt"), "an exception must expire"))
	}
	errs = append(errs, x.compileEntries(root.Child("exceptions"), spec.Exceptions)...)
	if m := spec.Match; m != nil {
		errs = append(errs, x.compileMatch(root.Child("match"), m, namespace == policyNamespace)...)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return x, nil
}

func (x *Exception) compileEntries(p *field.Path, entries []v1alpha1.ExceptionEntry) field.ErrorList {
	var errs field.ErrorList
	switch {
	case len(entries) == 0:
		return field.ErrorList{field.Required(p, "name at least one policy and its rules")}
	case len(entries) > v1alpha1.MaxExceptionEntries:
		return field.ErrorList{field.TooMany(p, len(entries), v1alpha1.MaxExceptionEntries)}
	}
	for i, e := range entries {
		ep := p.Index(i)
		src, perrs := exceptedSource(ep.Child("policy"), e.Policy)
		errs = append(errs, perrs...)
		rp := ep.Child("rules")
		switch {
		case len(e.Rules) == 0:
			errs = append(errs, field.Required(rp, "name the rules lifted, as violations name them (pods.requireRunAsNonRoot)"))
		case len(e.Rules) > v1alpha1.MaxExceptionRules:
			errs = append(errs, field.TooMany(rp, len(e.Rules), v1alpha1.MaxExceptionRules))
		}
		for j, r := range e.Rules[:min(len(e.Rules), v1alpha1.MaxExceptionRules)] {
			switch {
			case r == "":
				errs = append(errs, field.Required(rp.Index(j), "a rule name"))
			case len(r) > v1alpha1.MaxExceptionNameBytes:
				errs = append(errs, field.TooLong(rp.Index(j), "", v1alpha1.MaxExceptionNameBytes))
			case r == ruleMaxTotal:
				errs = append(errs, field.Forbidden(rp.Index(j), "the namespace quota cannot be excepted: raise the policy's limit instead"))
			case slices.Contains(unexceptable, r):
				errs = append(errs, field.Forbidden(rp.Index(j), fmt.Sprintf("%q is not a rule of a policy and cannot be excepted", r)))
			}
		}
		if perrs == nil {
			x.entries = append(x.entries, exceptionEntry{source: src.String(), rules: slices.Clone(e.Rules)})
		}
	}
	return errs
}

// exceptedSource is the policy an entry names, as violations name it.
func exceptedSource(p *field.Path, ref v1alpha1.PolicyReference) (Source, field.ErrorList) {
	var errs field.ErrorList
	switch ref.Kind {
	case v1alpha1.PolicyKindAdmissionPolicy:
		if ref.Namespace != "" {
			errs = append(errs, field.Forbidden(p.Child("namespace"), "an AdmissionPolicy is cluster-scoped: leave the namespace out"))
		}
	case v1alpha1.PolicyKindConfigMap:
		if ref.Namespace == "" {
			errs = append(errs, field.Required(p.Child("namespace"), "the namespace of the policy ConfigMap"))
		}
	default:
		errs = append(errs, field.NotSupported(p.Child("kind"), ref.Kind, []string{v1alpha1.PolicyKindAdmissionPolicy, v1alpha1.PolicyKindConfigMap}))
	}
	switch {
	case ref.Name == "":
		errs = append(errs, field.Required(p.Child("name"), "the policy's name"))
	case len(ref.Name) > v1alpha1.MaxExceptionNameBytes:
		errs = append(errs, field.TooLong(p.Child("name"), "", v1alpha1.MaxExceptionNameBytes))
	}
	if len(ref.Namespace) > 63 {
		errs = append(errs, field.TooLong(p.Child("namespace"), "", 63))
	}
	return Source{Kind: ref.Kind, Namespace: ref.Namespace, Name: ref.Name}, errs
}

func (x *Exception) compileMatch(p *field.Path, m *v1alpha1.ExceptionMatch, clusterWide bool) field.ErrorList {
	var errs field.ErrorList
	if len(m.Kinds) > v1alpha1.MaxExceptionKinds {
		errs = append(errs, field.TooMany(p.Child("kinds"), len(m.Kinds), v1alpha1.MaxExceptionKinds))
	}
	supported := []string{KindPod, KindMyApple}
	for _, c := range PodControllers() {
		supported = append(supported, string(c.Kind))
	}
	for i, k := range m.Kinds[:min(len(m.Kinds), v1alpha1.MaxExceptionKinds)] {
		if !slices.Contains(supported, k) {
			errs = append(errs, field.NotSupported(p.Child("kinds").Index(i), k, supported))
			continue
		}
		x.kinds = append(x.kinds, Kind(k))
	}
	if len(m.Names) > v1alpha1.MaxExceptionNames {
		errs = append(errs, field.TooMany(p.Child("names"), len(m.Names), v1alpha1.MaxExceptionNames))
	}
	for i, n := range m.Names[:min(len(m.Names), v1alpha1.MaxExceptionNames)] {
		if why := validGlob(n); why != "" {
			errs = append(errs, field.Invalid(p.Child("names").Index(i), n, why))
			continue
		}
		x.names = append(x.names, n)
	}
	var err error
	opts := metav1validation.LabelSelectorValidationOptions{}
	if m.ObjectSelector != nil {
		if serrs := metav1validation.ValidateLabelSelector(m.ObjectSelector, opts, p.Child("objectSelector")); len(serrs) > 0 {
			errs = append(errs, serrs...)
		} else if x.objSelector, err = selector(m.ObjectSelector); err != nil {
			errs = append(errs, field.Invalid(p.Child("objectSelector"), "", err.Error()))
		}
	}
	if m.NamespaceSelector != nil {
		switch {
		case !clusterWide:
			errs = append(errs, field.Forbidden(p.Child("namespaceSelector"), "only an exception in the webhook's own namespace covers other namespaces"))
		default:
			if serrs := metav1validation.ValidateLabelSelector(m.NamespaceSelector, opts, p.Child("namespaceSelector")); len(serrs) > 0 {
				errs = append(errs, serrs...)
			} else if x.nsSelector, err = selector(m.NamespaceSelector); err != nil {
				errs = append(errs, field.Invalid(p.Child("namespaceSelector"), "", err.Error()))
			}
		}
	}
	return errs
}

// validGlob says what is wrong with a name glob, "" if nothing: the
// characters of an object name, and '*' for any run of them.
func validGlob(g string) string {
	switch {
	case g == "":
		return "must not be empty"
	case len(g) > v1alpha1.MaxExceptionNameBytes:
		return fmt.Sprintf("must be at most %d characters", v1alpha1.MaxExceptionNameBytes)
	}
	for _, r := range g {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '*') {
			return "a glob is lower-case letters, digits, '-', '.' and '*' (any run of characters)"
		}
	}
	return ""
}

// matchGlob reports whether name matches a glob of '*' wildcards, in time
// linear in len(glob)*len(name) at worst.
func matchGlob(glob, name string) bool {
	gi, ni := 0, 0
	star, mark := -1, 0
	for ni < len(name) {
		switch {
		case gi < len(glob) && glob[gi] == '*':
			star, mark = gi, ni
			gi++
		case gi < len(glob) && glob[gi] == name[ni]:
			gi++
			ni++
		case star >= 0:
			gi = star + 1
			mark++
			ni = mark
		default:
			return false
		}
	}
	for gi < len(glob) && glob[gi] == '*' {
		gi++
	}
	return gi == len(glob)
}

// ValidateExpiry holds an exception being created, or whose spec changes,
// to an expiry after now and at most maxDuration ahead. An exception
// already stored that has expired is inactive, not invalid: this is for
// writes only.
func ValidateExpiry(expiresAt, now time.Time, maxDuration time.Duration) field.ErrorList {
	p := field.NewPath("spec", "expiresAt")
	switch {
	case expiresAt.IsZero():
		return field.ErrorList{field.Required(p, "an exception must expire")}
	case !expiresAt.After(now):
		return field.ErrorList{field.Invalid(p, expiresAt.UTC().Format(time.RFC3339), "is not in the future (now is "+now.UTC().Format(time.RFC3339)+")")}
	case maxDuration > 0 && expiresAt.Sub(now) > maxDuration:
		return field.ErrorList{field.Invalid(p, expiresAt.UTC().Format(time.RFC3339),
			fmt.Sprintf("is further ahead than the maximum an exception may last (%s, until %s): ask again when it is over",
				formatDuration(maxDuration), now.Add(maxDuration).UTC().Format(time.RFC3339)))}
	}
	return nil
}

func formatDuration(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.String()
}

// CheckRules holds the rules an exception names to the policies in force:
// a rule the named policy does not have is an error; a policy not there
// (yet) is a warning. policyOf looks a policy up by source.
func (x *Exception) CheckRules(entries []v1alpha1.ExceptionEntry, policyOf func(Source) *Policy) (field.ErrorList, []string) {
	var (
		errs     field.ErrorList
		warnings []string
	)
	p := field.NewPath("spec", "exceptions")
	for i, e := range entries {
		src := Source{Kind: e.Policy.Kind, Namespace: e.Policy.Namespace, Name: e.Policy.Name}
		pol := policyOf(src)
		switch {
		case pol == nil:
			warnings = append(warnings, fmt.Sprintf("%s does not exist (yet): spec.exceptions[%d].rules cannot be checked against it", src, i))
			continue
		case pol.refusal != "":
			warnings = append(warnings, fmt.Sprintf("%s is invalid and has no version in force: spec.exceptions[%d].rules cannot be checked against it", src, i))
			continue
		}
		have := pol.Rules()
		for j, r := range e.Rules {
			if r != "" && !slices.Contains(have, r) {
				errs = append(errs, field.Invalid(p.Index(i).Child("rules").Index(j), r, fmt.Sprintf("%s has no such rule (it has %s)", src, ruleList(have))))
			}
		}
	}
	return errs, warnings
}

func ruleList(rules []string) string {
	if len(rules) == 0 {
		return "none"
	}
	return listForMessage(rules)
}

// ExceptionSet is an immutable collection of compiled exceptions, indexed
// by the namespace they cover.
type ExceptionSet struct {
	all         []*Exception
	cluster     []*Exception
	byNamespace map[string][]*Exception
}

// NewExceptionSet indexes exceptions, ordered by namespace and name so
// that the one named in a warning does not depend on the input order.
func NewExceptionSet(exceptions []*Exception) *ExceptionSet {
	all := slices.Clone(exceptions)
	slices.SortFunc(all, func(a, b *Exception) int { return strings.Compare(a.ref, b.ref) })
	s := &ExceptionSet{all: all}
	for _, x := range all {
		if x.Scope == "" {
			s.cluster = append(s.cluster, x)
			continue
		}
		if s.byNamespace == nil {
			s.byNamespace = map[string][]*Exception{}
		}
		s.byNamespace[x.Scope] = append(s.byNamespace[x.Scope], x)
	}
	return s
}

// All returns every exception, active or not.
func (s *ExceptionSet) All() []*Exception {
	if s == nil {
		return nil
	}
	return s.all
}

// Len is how many exceptions the set holds, active or not.
func (s *ExceptionSet) Len() int {
	if s == nil {
		return 0
	}
	return len(s.all)
}

// ActiveAt counts the exceptions in force at now.
func (s *ExceptionSet) ActiveAt(now time.Time) int {
	n := 0
	for _, x := range s.All() {
		if x.Active(now) {
			n++
		}
	}
	return n
}

// NextExpiry is the earliest ExpiresAt after now, and whether there is one:
// when the verdicts of the objects some exception covers change next.
func (s *ExceptionSet) NextExpiry(now time.Time) (time.Time, bool) {
	var next time.Time
	for _, x := range s.All() {
		if x.ExpiresAt.After(now) && (next.IsZero() || x.ExpiresAt.Before(next)) {
			next = x.ExpiresAt
		}
	}
	return next, !next.IsZero()
}

// WithExceptions has the set's evaluations lift the violations the
// exceptions cover, while they are active at the request's Now.
func WithExceptions(x *ExceptionSet) SetOption {
	return func(s *Set) { s.exceptions = x }
}

// Exceptions are the set's exceptions; nil when it has none.
func (s *Set) Exceptions() *ExceptionSet { return s.exceptions }

// WithoutExceptions is the same policies with no exception, sharing everything.
func (s *Set) WithoutExceptions() *Set { return s.Excepting(nil) }

// Excepting is the same policies with the exceptions x instead of the
// set's own, sharing everything else.
func (s *Set) Excepting(x *ExceptionSet) *Set {
	c := *s
	c.exceptions = x
	return &c
}

// exceptIn lifts what the set's exceptions cover, against the request's
// clock: none without one.
func (e *evaluation) exceptIn(s *Set, d *Decision) {
	if s.exceptions != nil && len(d.Violations) > 0 && !e.req.Now.IsZero() {
		e.except(s.exceptions, d)
	}
}

// except marks the violations an active exception covers, and decides again
// whether the request is allowed: an excepted Deny violation refuses nothing.
func (e *evaluation) except(xs *ExceptionSet, d *Decision) {
	cluster, ns := xs.cluster, xs.byNamespace[e.req.Namespace]
	if len(cluster) == 0 && len(ns) == 0 {
		return
	}
	excepted := false
	for i := range d.Violations {
		v := &d.Violations[i]
		if slices.Contains(unexceptable, v.Rule) {
			continue
		}
		x := e.coveredBy(ns, v)
		if x == nil {
			x = e.coveredBy(cluster, v)
		}
		if x == nil {
			continue
		}
		v.ExceptedBy, v.ExceptedUntil = x.ref, x.ExpiresAt
		if !slices.Contains(d.Exceptions, x) {
			d.Exceptions = append(d.Exceptions, x)
		}
		excepted = true
	}
	if !excepted {
		return
	}
	d.Allowed = e.exhaustedBy == nil && !slices.ContainsFunc(d.Violations, func(v Violation) bool {
		return v.Enforcement == v1alpha1.Deny && v.ExceptedBy == ""
	})
}

func (e *evaluation) coveredBy(xs []*Exception, v *Violation) *Exception {
	for _, x := range xs {
		if x.covers(e, v) {
			return x
		}
	}
	return nil
}

// Covers reports whether the exception, active at req.Now, lifts v, a
// violation of req: impact warnings ask it of violations found without
// exceptions. cluster gives namespace labels; it may be nil.
func (x *Exception) Covers(req *Request, v *Violation, cluster Cluster) bool {
	if x.Scope != "" && x.Scope != req.Namespace || slices.Contains(unexceptable, v.Rule) {
		return false
	}
	e := evaluation{req: req, cluster: cluster, objLabels: req.Object().Labels}
	return x.covers(&e, v)
}

func (x *Exception) covers(e *evaluation, v *Violation) bool {
	if !x.Active(e.req.Now) {
		return false
	}
	if !slices.ContainsFunc(x.entries, func(en exceptionEntry) bool {
		return en.source == v.Source && slices.Contains(en.rules, v.Rule)
	}) {
		return false
	}
	if x.kinds != nil && !slices.Contains(x.kinds, e.req.ObjectKind()) {
		return false
	}
	if x.names != nil {
		name := e.req.Name()
		if !slices.ContainsFunc(x.names, func(g string) bool { return matchGlob(g, name) }) {
			return false
		}
	}
	if x.objSelector != nil && !x.objSelector.Matches(labels.Set(e.objLabels)) {
		return false
	}
	if x.nsSelector != nil && !x.nsSelector.Matches(labels.Set(e.namespaceLabels())) {
		return false
	}
	return true
}

// MayCover reports whether the exception's match.kinds lets it cover an
// object of kind.
func (x *Exception) MayCover(kind Kind) bool {
	return x.kinds == nil || slices.Contains(x.kinds, kind)
}

// JudgeException is what writing a PolicyException must pass, at now: a
// valid spec, an expiry after now and at most maxDuration ahead, and rules
// the policies of set have (set nil: not checked). It returns the
// compiled exception, warnings (a policy not there yet), and field errors.
// The webhook and `check` judge exceptions written with it alike.
func JudgeException(x *v1alpha1.PolicyException, policyNamespace string, now time.Time, maxDuration time.Duration, set *Set) (*Exception, []string, field.ErrorList) {
	compiled, errs := CompileException(x.Namespace, x.Name, fmt.Sprint(x.Generation), &x.Spec, policyNamespace)
	if !x.Spec.ExpiresAt.IsZero() {
		errs = append(errs, ValidateExpiry(x.Spec.ExpiresAt.Time, now, maxDuration)...)
	}
	var warnings []string
	if compiled != nil && set != nil {
		rerrs, w := compiled.CheckRules(x.Spec.Exceptions, set.Policy)
		errs = append(errs, rerrs...)
		warnings = w
	}
	if len(errs) > 0 {
		return nil, warnings, errs
	}
	return compiled, warnings, nil
}
