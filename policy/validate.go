package policy

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/distribution/reference"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
)

// The MyApple CRD allows these sizes, so a policy may only narrow them.
var validSizes = []string{"small", "medium", "large"}

// tagPattern is the OCI distribution tag grammar.
var tagPattern = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)

// ValidateSpec checks a decoded spec for values no rule could mean, with the
// field path of each.
func ValidateSpec(spec *v1alpha1.PolicySpec) field.ErrorList {
	var errs field.ErrorList
	switch spec.Enforcement {
	case "", v1alpha1.Deny, v1alpha1.Warn, v1alpha1.Audit:
	default:
		errs = append(errs, FieldError("enforcement", fmt.Sprintf("unsupported value %q: must be one of Deny, Warn, Audit", spec.Enforcement)))
	}
	errs = append(errs, ValidateMatch(&spec.Match)...)
	if spec.Pods == nil && spec.MyApples == nil && len(spec.Validations) == 0 {
		errs = append(errs, FieldError("", "no rules: set pods, myApples or validations"))
	}
	if spec.Pods != nil {
		if !matchesKind(spec.Match.Kinds, KindPod) {
			errs = append(errs, FieldError("pods", "these rules never apply: match.kinds leaves out Pod"))
		}
		errs = append(errs, validatePodRules(spec.Pods)...)
	}
	if spec.MyApples != nil {
		if !matchesKind(spec.Match.Kinds, KindMyApple) {
			errs = append(errs, FieldError("myApples", "these rules never apply: match.kinds leaves out MyApple"))
		}
		errs = append(errs, validateMyAppleRules(spec.MyApples)...)
	}
	return errs
}

// matchesKind reports whether kinds, a match.kinds (strings) or a
// Coverage's, let a policy judge kind; empty lets it judge every kind.
func matchesKind[K ~string](kinds []K, kind Kind) bool {
	return len(kinds) == 0 || slices.Contains(kinds, K(kind))
}

// ValidateMatch checks a match alone, as ValidateSpec does within a spec.
func ValidateMatch(m *v1alpha1.Match) field.ErrorList {
	var errs field.ErrorList
	seen := map[string]bool{}
	for i, k := range m.Kinds {
		p := fmt.Sprintf("match.kinds[%d]", i)
		switch {
		case k != KindPod && k != KindMyApple:
			errs = append(errs, FieldError(p, fmt.Sprintf("unsupported value %q: must be Pod or MyApple", k)))
		case seen[k]:
			errs = append(errs, FieldError(p, fmt.Sprintf("duplicate value %q", k)))
		}
		seen[k] = true
	}
	if m.PodControllers != nil {
		if !matchesKind(m.Kinds, KindPod) {
			errs = append(errs, FieldError("match.podControllers", "never applies: match.kinds leaves out Pod, whose template these kinds are judged by"))
		}
		seen := map[string]bool{}
		for i, k := range *m.PodControllers {
			p := fmt.Sprintf("match.podControllers[%d]", i)
			_, ok := PodControllerOf(Kind(k))
			switch {
			case !ok:
				errs = append(errs, FieldError(p, fmt.Sprintf("unsupported value %q: must be one of %s", k, podControllerList())))
			case seen[k]:
				errs = append(errs, FieldError(p, fmt.Sprintf("duplicate value %q", k)))
			}
			seen[k] = true
		}
	}
	opts := metav1validation.LabelSelectorValidationOptions{}
	if m.NamespaceSelector != nil {
		errs = append(errs, (metav1validation.ValidateLabelSelector(m.NamespaceSelector, opts, field.NewPath("match", "namespaceSelector")))...)
	}
	if m.ObjectSelector != nil {
		errs = append(errs, (metav1validation.ValidateLabelSelector(m.ObjectSelector, opts, field.NewPath("match", "objectSelector")))...)
	}
	for i, ns := range m.ExcludedNamespaces {
		for _, msg := range validation.IsDNS1123Label(ns) {
			errs = append(errs, FieldError(fmt.Sprintf("match.excludedNamespaces[%d]", i), fmt.Sprintf("invalid namespace name %q: %s", ns, msg)))
		}
	}
	return errs
}

func podControllerList() string {
	var kinds []string
	for _, c := range PodControllers() {
		kinds = append(kinds, string(c.Kind))
	}
	return strings.Join(kinds, ", ")
}

func validatePodRules(r *v1alpha1.PodRules) field.ErrorList {
	var errs field.ErrorList
	for i, reg := range r.AllowedRegistries {
		if msg := registryProblem(reg); msg != "" {
			errs = append(errs, FieldError(fmt.Sprintf("pods.allowedRegistries[%d]", i), fmt.Sprintf("invalid registry prefix %q: %s", reg, msg)))
		}
	}
	for i, tag := range r.DisallowedTags {
		if !tagPattern.MatchString(tag) {
			errs = append(errs, FieldError(fmt.Sprintf("pods.disallowedTags[%d]", i), fmt.Sprintf("invalid tag %q: tags are letters, digits, '_', '.' and '-', at most 128", tag)))
		}
	}
	for i, l := range r.RequiredLabels {
		for _, msg := range validation.IsQualifiedName(l) {
			errs = append(errs, FieldError(fmt.Sprintf("pods.requiredLabels[%d]", i), fmt.Sprintf("invalid label key %q: %s", l, msg)))
		}
	}
	for i, res := range r.RequireResourceLimits {
		for _, msg := range validation.IsQualifiedName(res) {
			errs = append(errs, FieldError(fmt.Sprintf("pods.requireResourceLimits[%d]", i), fmt.Sprintf("invalid resource name %q: %s", res, msg)))
		}
	}
	return errs
}

// registryProblem says what is wrong with an allowedRegistries entry, or "",
// pointing out misunderstandings rather than keeping entries that never match.
func registryProblem(reg string) string {
	trimmed := strings.TrimSuffix(reg, "/")
	switch {
	case trimmed == "":
		return "must not be empty"
	case strings.Contains(reg, "://"):
		return "write the registry host without a scheme, e.g. registry.example.com/"
	case strings.ContainsAny(reg, " \t\n@"):
		return "must be a registry host and optional repository path, without spaces or a digest"
	case strings.HasPrefix(reg, "/"), strings.Contains(trimmed, "//"):
		return "has an empty path component"
	}
	if i := strings.LastIndex(trimmed, "/"); i >= 0 && strings.Contains(trimmed[i:], ":") {
		return "must not carry a tag: it is a prefix of repository names"
	}
	if _, path, _ := strings.Cut(trimmed, "/"); strings.ToLower(path) != path {
		return "repository paths are lowercase"
	}
	named, err := reference.ParseNormalizedNamed(trimmed + registryProbe)
	if err != nil {
		return "must be a registry host and optional repository path, such as registry.example.com/team/"
	}
	// Only a first component with a dot, a port or "localhost" is a host:
	// the runtime reads "myregistry/app" as docker.io/myregistry/app.
	host, _, _ := strings.Cut(trimmed, "/")
	if d := reference.Domain(named); !strings.EqualFold(d, host) && (host != "index.docker.io" || d != "docker.io") {
		return fmt.Sprintf("%q is not a registry host (no dot or port): images such as %s/app are pulled from %s/%s/app; write the registry's full host name, or %s/%s/ if Docker Hub is meant",
			host, host, d, host, d, host)
	}
	return ""
}
func validateMyAppleRules(r *v1alpha1.MyAppleRules) field.ErrorList {
	var errs field.ErrorList
	for i, c := range r.AllowedColors {
		if c == "" {
			errs = append(errs, FieldError(fmt.Sprintf("myApples.allowedColors[%d]", i), "must not be empty"))
		}
	}
	for i, s := range r.AllowedSizes {
		if !slices.Contains(validSizes, s) {
			errs = append(errs, FieldError(fmt.Sprintf("myApples.allowedSizes[%d]", i), fmt.Sprintf("unsupported value %q: must be one of small, medium, large", s)))
		}
	}
	if r.MinQuantity != nil && *r.MinQuantity < 1 {
		errs = append(errs, FieldError("myApples.minQuantity", fmt.Sprintf("must be at least 1, not %d", *r.MinQuantity)))
	}
	if r.MaxQuantity != nil && *r.MaxQuantity < 1 {
		errs = append(errs, FieldError("myApples.maxQuantity", fmt.Sprintf("must be at least 1, not %d", *r.MaxQuantity)))
	}
	if r.MinQuantity != nil && r.MaxQuantity != nil && *r.MaxQuantity >= 1 && *r.MinQuantity > *r.MaxQuantity {
		errs = append(errs, FieldError("myApples.maxQuantity", fmt.Sprintf("must not be less than minQuantity (%d), not %d", *r.MinQuantity, *r.MaxQuantity)))
	}
	if r.MaxTotalQuantityPerNamespace != nil && *r.MaxTotalQuantityPerNamespace < 1 {
		errs = append(errs, FieldError("myApples.maxTotalQuantityPerNamespace", fmt.Sprintf("must be at least 1, not %d", *r.MaxTotalQuantityPerNamespace)))
	}
	return errs
}
