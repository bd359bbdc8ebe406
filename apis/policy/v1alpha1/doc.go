// Package v1alpha1 holds the policy schema shared by both carriers — the
// data key policy.yaml of a policy ConfigMap and the spec of an
// AdmissionPolicy — and the AdmissionPolicy API type itself.
//
// +kubebuilder:object:generate=true
// +groupName=policy.example.com
package v1alpha1
