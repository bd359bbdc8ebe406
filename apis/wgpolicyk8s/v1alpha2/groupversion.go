package v1alpha2

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of PolicyReport.
var GroupVersion = schema.GroupVersion{Group: "wgpolicyk8s.io", Version: "v1alpha2"}

// Resources the audit writes and lists.
var (
	PolicyReportResource        = GroupVersion.WithResource("policyreports")
	ClusterPolicyReportResource = GroupVersion.WithResource("clusterpolicyreports")
)

// Kinds, as written in apiVersion/kind.
const (
	KindPolicyReport        = "PolicyReport"
	KindClusterPolicyReport = "ClusterPolicyReport"
)
