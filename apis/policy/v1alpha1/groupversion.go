package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of AdmissionPolicy.
var GroupVersion = schema.GroupVersion{Group: "policy.example.com", Version: "v1alpha1"}

// Resource is the GroupVersionResource the informers and clients use.
var Resource = GroupVersion.WithResource("admissionpolicies")

// AddToScheme registers AdmissionPolicy, PolicyException and their lists with a scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &AdmissionPolicy{}, &AdmissionPolicyList{}, &PolicyException{}, &PolicyExceptionList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
