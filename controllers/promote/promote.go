// Package promote makes a policy's candidate its spec: the one write a
// person asks for (`policy-webhook promote`), in one update conditioned on
// the resourceVersion read, so that an edit in between is never lost.
package promote

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy"
)

// Target names the policy whose candidate is promoted.
type Target struct {
	// Kind is policy.SourceAdmissionPolicy or policy.SourceConfigMap.
	Kind            string
	Namespace, Name string
}

func (t Target) String() string {
	if t.Kind == policy.SourceConfigMap {
		return "ConfigMap " + t.Namespace + "/" + t.Name
	}
	return "AdmissionPolicy " + t.Name
}

// ParseTarget reads admissionpolicy/NAME (ap/, admissionpolicies/) or
// configmap/NAMESPACE/NAME (cm/, configmaps/).
func ParseTarget(s string) (Target, error) {
	parts := strings.Split(s, "/")
	switch strings.ToLower(parts[0]) {
	case "admissionpolicy", "admissionpolicies", "ap":
		if len(parts) == 2 && parts[1] != "" {
			return Target{Kind: policy.SourceAdmissionPolicy, Name: parts[1]}, nil
		}
	case "configmap", "configmaps", "cm":
		if len(parts) == 3 && parts[1] != "" && parts[2] != "" {
			return Target{Kind: policy.SourceConfigMap, Namespace: parts[1], Name: parts[2]}, nil
		}
	}
	return Target{}, fmt.Errorf("%q: name admissionpolicy/NAME or configmap/NAMESPACE/NAME", s)
}

// ErrNoCandidate is the error of a policy that carries no candidate.
var ErrNoCandidate = errors.New("carries no candidate to promote")

// ErrConflict is the error of a promotion that lost a race with an edit:
// nothing was written.
var ErrConflict = errors.New("changed since it was read")

// Result says what was promoted.
type Result struct {
	Target Target
	// From is the resourceVersion read and replaced; To the one written.
	From, To string
}

// Promote copies the candidate of t into its spec and removes it, in one
// update conditioned on the resourceVersion read: a concurrent edit makes
// it fail with ErrConflict, writing nothing. An AdmissionPolicy whose
// status alone changed meanwhile (the replicas write it as they count) is
// promoted from its new resourceVersion, its spec and metadata being those
// read.
func Promote(ctx context.Context, dyn dynamic.Interface, kube kubernetes.Interface, t Target) (Result, error) {
	if t.Kind == policy.SourceConfigMap {
		return promoteConfigMap(ctx, kube, t)
	}
	return promoteAdmissionPolicy(ctx, dyn, t)
}

// statusRetries bounds how often a promotion is tried again when what
// changed meanwhile is only the status, which the webhook's replicas write
// as they count a candidate's outcomes: that is no edit of the policy.
const statusRetries = 5

func promoteAdmissionPolicy(ctx context.Context, dyn dynamic.Interface, t Target) (Result, error) {
	client := dyn.Resource(v1alpha1.Resource)
	read, err := readAdmissionPolicy(ctx, client, t)
	if err != nil {
		return Result{Target: t}, err
	}
	res := Result{Target: t, From: read.ResourceVersion}
	if read.Spec.Candidate == nil {
		return res, fmt.Errorf("%s %w", t, ErrNoCandidate)
	}
	cur := read
	for attempt := 0; ; attempt++ {
		ap := cur.DeepCopy()
		ap.Spec.PolicySpec, ap.Spec.Candidate = *ap.Spec.Candidate, nil
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ap)
		if err != nil {
			return res, fmt.Errorf("writing %s: %w", t, err)
		}
		// The status is the subresource's: an update of the object ignores it.
		delete(obj, "status")
		out, err := client.Update(ctx, &unstructured.Unstructured{Object: obj}, metav1.UpdateOptions{FieldManager: FieldManager})
		if err == nil {
			res.To = out.GetResourceVersion()
			return res, nil
		}
		if !apierrors.IsConflict(err) || attempt == statusRetries {
			return res, updateError(t, cur.ResourceVersion, err)
		}
		// Conditioned on the resourceVersion read, the update fails on any
		// change; go on only if nothing but the status changed.
		next, rerr := readAdmissionPolicy(ctx, client, t)
		if rerr != nil {
			return res, updateError(t, cur.ResourceVersion, err)
		}
		if !sameButStatus(read, next) {
			return res, updateError(t, read.ResourceVersion, err)
		}
		cur = next
	}
}

func readAdmissionPolicy(ctx context.Context, client dynamic.NamespaceableResourceInterface, t Target) (*v1alpha1.AdmissionPolicy, error) {
	u, err := client.Get(ctx, t.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", t, err)
	}
	var ap v1alpha1.AdmissionPolicy
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, &ap, true); err != nil {
		return nil, fmt.Errorf("reading %s: %w", t, err)
	}
	return &ap, nil
}

// sameButStatus reports whether b is a as read but for its status: same
// object, generation (the spec), labels, annotations, finalizers and owners.
func sameButStatus(a, b *v1alpha1.AdmissionPolicy) bool {
	return a.UID == b.UID && a.Generation == b.Generation &&
		equality.Semantic.DeepEqual(a.Spec, b.Spec) &&
		equality.Semantic.DeepEqual(a.Labels, b.Labels) &&
		equality.Semantic.DeepEqual(a.Annotations, b.Annotations) &&
		equality.Semantic.DeepEqual(a.Finalizers, b.Finalizers) &&
		equality.Semantic.DeepEqual(a.OwnerReferences, b.OwnerReferences)
}

func promoteConfigMap(ctx context.Context, kube kubernetes.Interface, t Target) (Result, error) {
	client := kube.CoreV1().ConfigMaps(t.Namespace)
	cm, err := client.Get(ctx, t.Name, metav1.GetOptions{})
	if err != nil {
		return Result{Target: t}, fmt.Errorf("reading %s: %w", t, err)
	}
	res := Result{Target: t, From: cm.ResourceVersion}
	cand, ok := cm.Data[policy.ConfigMapCandidateKey]
	if !ok {
		return res, fmt.Errorf("%s %w (data key %s)", t, ErrNoCandidate, policy.ConfigMapCandidateKey)
	}
	promoted := cm.DeepCopy()
	promoted.Data[policy.ConfigMapDataKey] = cand
	delete(promoted.Data, policy.ConfigMapCandidateKey)
	out, err := client.Update(ctx, promoted, metav1.UpdateOptions{FieldManager: FieldManager})
	if err != nil {
		return res, updateError(t, cm.ResourceVersion, err)
	}
	res.To = out.ResourceVersion
	return res, nil
}

// FieldManager names promote's writes.
const FieldManager = "policy-webhook-promote"

func updateError(t Target, rv string, err error) error {
	if apierrors.IsConflict(err) {
		return fmt.Errorf("%s %w (resourceVersion %s): nothing was written; read its candidate again and promote again if it is still the one to enforce: %w",
			t, ErrConflict, rv, err)
	}
	return fmt.Errorf("writing %s: %w", t, err)
}
