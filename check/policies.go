package check

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/api/v1alpha1"
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
}

func (o *Options) notef(format string, args ...any) {
	if o.Notes != nil {
		fmt.Fprintf(o.Notes, "note: "+format+"\n", args...)
	}
}

// objectMeta is the part of any object the loader reads.
type objectMeta struct {
	Metadata struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
}

// loadPolicies compiles the policy carriers among docs. Namespaces feed
// cluster, since their labels are what namespaceSelector reads; anything else
// is skipped, with one note per kind. A later version of the same source
// replaces an earlier one, as a second apply would.
func loadPolicies(docs []Document, opts *Options, cluster *Cluster) ([]*policy.Policy, map[policy.Source]bool, error) {
	var order []policy.Source
	compiled := map[policy.Source]*policy.Policy{}
	skipped := map[string]int{}
	for _, d := range docs {
		var m objectMeta
		if err := json.Unmarshal(d.Raw, &m); err != nil {
			return nil, nil, fmt.Errorf("%s: reading metadata: %w", d.Where, err)
		}
		var (
			src  policy.Source
			spec *v1alpha1.PolicySpec
			err  error
		)
		switch {
		case d.Kind == "ConfigMap" && d.APIVersion == "v1":
			ns := m.Metadata.Namespace
			if ns == "" {
				ns = opts.DefaultNamespace
			}
			src = policy.Source{Kind: policy.SourceConfigMap, Namespace: ns, Name: m.Metadata.Name}
			if !policy.IsPolicyConfigMap(m.Metadata.Labels) {
				opts.notef("%s: skipping %s: it lacks the label %s=true", d.Where, src, policy.PolicyLabel)
				continue
			}
			var cm corev1.ConfigMap
			if err := json.Unmarshal(d.Raw, &cm); err != nil {
				return nil, nil, fmt.Errorf("%s: %s: %w", d.Where, src, err)
			}
			spec, err = policy.ParseConfigMapData(cm.Data)
		case d.Kind == "AdmissionPolicy" && d.APIVersion == v1alpha1.GroupVersion.String():
			src = policy.Source{Kind: policy.SourceAdmissionPolicy, Name: m.Metadata.Name}
			var obj struct {
				Spec json.RawMessage `json:"spec"`
			}
			if err := json.Unmarshal(d.Raw, &obj); err != nil {
				return nil, nil, fmt.Errorf("%s: %s: %w", d.Where, src, err)
			}
			spec, err = policy.ParseAdmissionPolicySpec(obj.Spec)
		case d.Kind == "Namespace" && d.APIVersion == "v1":
			cluster.SetNamespace(m.Metadata.Name, m.Metadata.Labels)
			continue
		default:
			skipped[d.Kind]++
			continue
		}
		if src.Name == "" {
			return nil, nil, fmt.Errorf("%s: %s: metadata.name: required", d.Where, src.Kind)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %s is not a valid policy: %w", d.Where, src, err)
		}
		scope := ""
		if src.Kind == policy.SourceConfigMap {
			scope = policy.ConfigMapScope(src.Namespace, opts.PolicyNamespace)
		}
		p, err := policy.Compile(src, scope, spec)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: compiling %s: %w", d.Where, src, err)
		}
		if _, seen := compiled[src]; !seen {
			order = append(order, src)
		}
		compiled[src] = p
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
	loaded := make(map[policy.Source]bool, len(order))
	for _, src := range order {
		out = append(out, compiled[src])
		loaded[src] = true
	}
	return out, loaded, nil
}
