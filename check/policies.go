package check

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	sigsjson "sigs.k8s.io/json"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/carrier"
)

// Options are the settings a check runs with.
type Options struct {
	// PolicyNamespace is the webhook's own namespace: ConfigMap policies in
	// it apply cluster-wide.
	PolicyNamespace string
	// DefaultNamespace holds objects that name none, as kubectl's -n would.
	DefaultNamespace string
	// Notes receives what was skipped and why; nil discards it.
	Notes io.Writer
	// Limits are those the webhook holds policies to; zero fields are the
	// defaults, as they are the webhook's.
	Limits carrier.Limits
	// Candidate judges each policy's candidate beside it (its spec still
	// decides): Result.Candidate lists where they disagree. An invalid
	// candidate is an error, as an invalid policy is.
	Candidate bool
	// Now is the instant objects are judged at: PolicyExceptions apply
	// until their expiresAt by it. Zero is the moment New is called.
	Now time.Time
	// MaxExceptionDuration bounds how far ahead a PolicyException judged
	// as a write may expire, as the webhook's --max-exception-duration;
	// 0 is 90 days.
	MaxExceptionDuration time.Duration
}

// DefaultMaxExceptionDuration is the webhook's default.
const DefaultMaxExceptionDuration = 90 * 24 * time.Hour

func (o *Options) notef(format string, args ...any) {
	if o.Notes != nil {
		fmt.Fprintf(o.Notes, "note: "+format+"\n", args...)
	}
}

// objectMeta is the part of any object the loader reads.
type objectMeta struct {
	Metadata struct {
		Name         string            `json:"name"`
		GenerateName string            `json:"generateName"`
		Namespace    string            `json:"namespace"`
		Labels       map[string]string `json:"labels"`
		Annotations  map[string]string `json:"annotations"`
	} `json:"metadata"`
}

// loadPolicies compiles the policy carriers among docs and records Namespaces
// in cluster; the rest is skipped with one note. A later version of a source
// replaces an earlier one, as a second apply would.
func loadPolicies(docs []Document, opts *Options, cluster *Cluster) ([]*policy.Policy, []*policy.Policy, []*loadedException, map[policy.Source]bool, error) {
	var order []policy.Source
	var exceptions []*loadedException
	exceptionAt := map[policy.Source]int{}
	compiled := map[policy.Source]*policy.Policy{}
	candidates := map[policy.Source]*policy.Policy{}
	skipped := map[string]int{}
	compiler := carrier.New(carrier.WithLimits(opts.Limits))
	inNamespace := map[string][]string{} // policy ConfigMaps by namespace, as the webhook counts them
	for _, d := range docs {
		var m objectMeta
		if err := json.Unmarshal(d.Raw, &m); err != nil {
			return nil, nil, nil, nil, fmt.Errorf("%s: reading metadata: %w", d.Where, err)
		}
		var src policy.Source
		switch {
		case (d.Kind == policy.SourceConfigMap && d.APIVersion == "v1") ||
			(d.Kind == policy.SourceAdmissionPolicy && d.APIVersion == v1alpha1.GroupVersion.String()):
			u := &unstructured.Unstructured{}
			if err := utiljson.Unmarshal(d.Raw, &u.Object); err != nil {
				return nil, nil, nil, nil, fmt.Errorf("%s: %w", d.Where, err)
			}
			if d.Kind == policy.SourceConfigMap && u.GetNamespace() == "" {
				u.SetNamespace(opts.DefaultNamespace)
			}
			var ours bool
			if src, ours = carrier.SourceOf(u); !ours {
				opts.notef("%s: skipping ConfigMap %s/%s: it lacks the label %s=true", d.Where, u.GetNamespace(), u.GetName(), policy.PolicyLabel)
				continue
			}
			if u.GetName() == "" {
				return nil, nil, nil, nil, fmt.Errorf("%s: %s: metadata.name: required", d.Where, src.Kind)
			}
			if why := compiler.TooManyPolicies(src, opts.PolicyNamespace, inNamespace[src.Namespace]); why != "" {
				return nil, nil, nil, nil, fmt.Errorf("%s: %s is refused: %s", d.Where, src, why)
			}
			p, err := compiler.Compile(u, opts.PolicyNamespace)
			if err != nil {
				return nil, nil, nil, nil, fmt.Errorf("%s: %w", d.Where, err)
			}
			if src.Kind == policy.SourceConfigMap && !slices.Contains(inNamespace[src.Namespace], src.Name) {
				inNamespace[src.Namespace] = append(inNamespace[src.Namespace], src.Name)
			}
			if _, seen := compiled[src]; !seen {
				order = append(order, src)
			}
			compiled[src] = p
			delete(candidates, src)
			if opts.Candidate {
				cand, present, err := compiler.CompileCandidate(u, opts.PolicyNamespace)
				if err != nil {
					return nil, nil, nil, nil, fmt.Errorf("%s: %w", d.Where, err)
				}
				if present {
					candidates[src] = cand.Policy
				}
			}
		case d.Kind == policy.SourcePolicyException && d.APIVersion == v1alpha1.GroupVersion.String():
			x, err := readException(d, opts.DefaultNamespace)
			if err != nil {
				return nil, nil, nil, nil, err
			}
			// As stored: an expired exception is inactive, not invalid.
			compiled, errs := policy.CompileException(x.Namespace, x.Name, fmt.Sprint(x.Generation), &x.Spec, opts.PolicyNamespace)
			src := policy.Source{Kind: policy.SourcePolicyException, Namespace: x.Namespace, Name: x.Name}
			if len(errs) > 0 {
				return nil, nil, nil, nil, fmt.Errorf("%s: %w", d.Where, &policy.InvalidError{Source: src, Errs: errs})
			}
			le := &loadedException{where: d.Where, spec: x, compiled: compiled}
			if i, seen := exceptionAt[src]; seen {
				exceptions[i] = le
			} else {
				exceptionAt[src] = len(exceptions)
				exceptions = append(exceptions, le)
			}
		case d.Kind == "Namespace" && d.APIVersion == "v1":
			cluster.SetNamespace(m.Metadata.Name, m.Metadata.Labels, m.Metadata.Annotations)
		default:
			skipped[d.Kind]++
		}
	}
	if len(skipped) > 0 {
		kinds := make([]string, 0, len(skipped))
		for k, n := range skipped {
			kinds = append(kinds, fmt.Sprintf("%d %s", n, k))
		}
		sort.Strings(kinds)
		opts.notef("policy paths: skipped objects that carry no policy (%s)", strings.Join(kinds, ", "))
	}
	out := make([]*policy.Policy, 0, len(order))
	var cands []*policy.Policy
	loaded := make(map[policy.Source]bool, len(order)+len(exceptions))
	for _, src := range order {
		out = append(out, compiled[src])
		if c := candidates[src]; c != nil {
			cands = append(cands, c)
		}
		loaded[src] = true
	}
	for src := range exceptionAt {
		loaded[src] = true
	}
	if opts.Candidate && len(cands) == 0 {
		opts.notef("--candidate: no policy carries a candidate (spec.candidate, or a ConfigMap's %s): nothing to compare", policy.ConfigMapCandidateKey)
	}
	return out, cands, exceptions, loaded, nil
}

// loadedException is a PolicyException read from the policy paths.
type loadedException struct {
	where    string
	spec     *v1alpha1.PolicyException
	compiled *policy.Exception
}

// readException decodes a PolicyException document by its struct tags,
// strictly, in namespace ns when it names none.
func readException(d Document, ns string) (*v1alpha1.PolicyException, error) {
	var x v1alpha1.PolicyException
	if err := strictUnmarshal(d.Raw, &x); err != nil {
		return nil, fmt.Errorf("%s: PolicyException: %w", d.Where, err)
	}
	if x.Namespace == "" {
		x.Namespace = ns
	}
	if x.Name == "" {
		return nil, fmt.Errorf("%s: PolicyException: metadata.name: required", d.Where)
	}
	return &x, nil
}

// strictUnmarshal decodes JSON into v as the API server would, refusing
// unknown and duplicate fields.
func strictUnmarshal(raw []byte, v any) error {
	strict, err := sigsjson.UnmarshalStrict(raw, v)
	if err != nil {
		return err
	}
	if len(strict) > 0 {
		return errors.Join(strict...)
	}
	return nil
}
