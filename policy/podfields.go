package policy

import (
	"fmt"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policy-webhook/policy-webhook/internal/jsonscan"
)

// The types below are the parts of a Pod that rules read, and nothing
// else: a Pod as a Deployment creates it carries managed fields, probes,
// env, mounts and ports that no rule looks at, and decoding them into
// corev1 types was most of the cost of an admission. Unknown members are
// skipped (still checked to be valid JSON), as encoding/json skips them.
// Keep these in step with what rules_pod.go and facts.go read: the
// differential test in podfields_test.go compares the result with a Pod
// decoded whole.

type podFields struct {
	Metadata struct {
		Name              string            `json:"name"`
		GenerateName      string            `json:"generateName"`
		Namespace         string            `json:"namespace"`
		Labels            map[string]string `json:"labels"`
		DeletionTimestamp *metav1.Time      `json:"deletionTimestamp"`
	} `json:"metadata"`
	Spec struct {
		InitContainers      []containerFields  `json:"initContainers"`
		Containers          []containerFields  `json:"containers"`
		EphemeralContainers []containerFields  `json:"ephemeralContainers"`
		SecurityContext     *podSecurityFields `json:"securityContext"`
		HostNetwork         bool               `json:"hostNetwork"`
		HostPID             bool               `json:"hostPID"`
		HostIPC             bool               `json:"hostIPC"`
		Volumes             []volumeFields     `json:"volumes"`
	} `json:"spec"`
}

type containerFields struct {
	Name            string          `json:"name"`
	Image           string          `json:"image"`
	SecurityContext *securityFields `json:"securityContext"`
	Resources       struct {
		Limits corev1.ResourceList `json:"limits"`
	} `json:"resources"`
}

type securityFields struct {
	Privileged   *bool  `json:"privileged"`
	RunAsNonRoot *bool  `json:"runAsNonRoot"`
	RunAsUser    *int64 `json:"runAsUser"`
}

type podSecurityFields struct {
	RunAsNonRoot *bool  `json:"runAsNonRoot"`
	RunAsUser    *int64 `json:"runAsUser"`
}

type volumeFields struct {
	Name     string                       `json:"name"`
	HostPath *corev1.HostPathVolumeSource `json:"hostPath"`
}

// decodePod decodes the fields of a Pod that rules read into a Pod that
// holds only those: Request.Pod is the engine's input, not a copy of the
// object for other uses.
func decodePod(raw []byte) (*corev1.Pod, error) {
	if pod := scanPodBytes(raw); pod != nil {
		return pod, nil
	}
	return decodePodExact(raw)
}

// decodePodExact is decodePod for what the scanner does not read exactly.
func decodePodExact(raw []byte) (*corev1.Pod, error) {
	var f podFields
	if err := jsonv2.Unmarshal(raw, &f, jsonscan.DecodeOptions); err != nil {
		return nil, err
	}
	return f.pod(), nil
}

// DecodePodFrom decodes the next value of dec as DecodeObject decodes a
// Pod, so that a caller reading an AdmissionReview decodes the object in
// the same pass instead of copying its bytes out to decode them again.
// On error, dec is left mid-value: the caller gives up on the whole input.
func DecodePodFrom(dec *jsontext.Decoder) (*corev1.Pod, error) {
	var f podFields
	if err := jsonv2.UnmarshalDecode(dec, &f, jsonscan.DecodeOptions); err != nil {
		return nil, fmt.Errorf("decoding Pod: %w", err)
	}
	return f.pod(), nil
}

func (f *podFields) pod() *corev1.Pod {
	m, s := &f.Metadata, &f.Spec
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: KindPod},
		ObjectMeta: metav1.ObjectMeta{
			Name: m.Name, GenerateName: m.GenerateName, Namespace: m.Namespace,
			Labels: m.Labels, DeletionTimestamp: m.DeletionTimestamp,
		},
		Spec: corev1.PodSpec{HostNetwork: s.HostNetwork, HostPID: s.HostPID, HostIPC: s.HostIPC},
	}
	if psc := s.SecurityContext; psc != nil {
		pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: psc.RunAsNonRoot, RunAsUser: psc.RunAsUser}
	}
	// One backing array for both lists of plain containers.
	n := len(s.InitContainers) + len(s.Containers)
	if n > 0 {
		all := make([]corev1.Container, n)
		for i := range s.InitContainers {
			s.InitContainers[i].into(&all[i])
		}
		for i := range s.Containers {
			s.Containers[i].into(&all[len(s.InitContainers)+i])
		}
		if len(s.InitContainers) > 0 {
			pod.Spec.InitContainers = all[:len(s.InitContainers):len(s.InitContainers)]
		}
		if len(s.Containers) > 0 {
			pod.Spec.Containers = all[len(s.InitContainers):]
		}
	}
	// The API server would refuse an empty list rather than a missing one,
	// but keep nil and empty apart as a whole decode does.
	if s.InitContainers != nil && pod.Spec.InitContainers == nil {
		pod.Spec.InitContainers = []corev1.Container{}
	}
	if s.Containers != nil && pod.Spec.Containers == nil {
		pod.Spec.Containers = []corev1.Container{}
	}
	if s.EphemeralContainers != nil {
		pod.Spec.EphemeralContainers = make([]corev1.EphemeralContainer, len(s.EphemeralContainers))
		for i := range s.EphemeralContainers {
			c := &s.EphemeralContainers[i]
			ec := &pod.Spec.EphemeralContainers[i].EphemeralContainerCommon
			ec.Name, ec.Image, ec.SecurityContext = c.Name, c.Image, c.SecurityContext.into()
			ec.Resources.Limits = c.Resources.Limits
		}
	}
	if s.Volumes != nil {
		pod.Spec.Volumes = make([]corev1.Volume, len(s.Volumes))
		for i := range s.Volumes {
			v := &pod.Spec.Volumes[i]
			v.Name, v.HostPath = s.Volumes[i].Name, s.Volumes[i].HostPath
		}
	}
	return pod
}

func (c *containerFields) into(out *corev1.Container) {
	out.Name, out.Image, out.SecurityContext = c.Name, c.Image, c.SecurityContext.into()
	out.Resources.Limits = c.Resources.Limits
}

func (sc *securityFields) into() *corev1.SecurityContext {
	if sc == nil {
		return nil
	}
	return &corev1.SecurityContext{Privileged: sc.Privileged, RunAsNonRoot: sc.RunAsNonRoot, RunAsUser: sc.RunAsUser}
}
