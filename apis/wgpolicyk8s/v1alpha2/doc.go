// Package v1alpha2 holds the PolicyReport and ClusterPolicyReport API of the
// Kubernetes Policy Working Group (wgpolicyk8s.io/v1alpha2), the format
// Kyverno, Kubewarden and Policy Reporter read. The types are written here
// from the working group's published schema, so that the audit writes
// reports those tools show, and controller-gen generates the CRDs shipped
// in manifests/components/policyreports.
//
// +kubebuilder:object:generate=true
// +groupName=wgpolicyk8s.io
package v1alpha2
