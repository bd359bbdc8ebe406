package policy

import (
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The types below are the parts of a Pod that rules read, and nothing
// else: a Pod as a Deployment creates it carries managed fields, probes,
// env, mounts and ports that no rule looks at, and decoding them into
// corev1 types was most of the cost of an admission. podscan.go fills them
// and skips everything else (still checked to be valid JSON), as
// encoding/json skips unknown members. Keep these in step with what
// rules_pod.go and facts.go read: the differential test in
// podfields_test.go compares the result with a Pod decoded whole.

type podFields struct {
	Metadata struct {
		Name              string
		GenerateName      string
		Namespace         string
		Labels            map[string]string
		DeletionTimestamp *metav1.Time
	}
	Spec struct {
		InitContainers      []containerFields
		Containers          []containerFields
		EphemeralContainers []containerFields
		SecurityContext     *podSecurityFields
		HostNetwork         bool
		HostPID             bool
		HostIPC             bool
		Volumes             []volumeFields
	}
}

type containerFields struct {
	Name            string
	Image           string
	SecurityContext *securityFields
	Resources       struct {
		Limits corev1.ResourceList
	}
}

type securityFields struct {
	Privileged   *bool
	RunAsNonRoot *bool
	RunAsUser    *int64
}

type podSecurityFields struct {
	RunAsNonRoot *bool
	RunAsUser    *int64
}

type volumeFields struct {
	Name     string
	HostPath *corev1.HostPathVolumeSource
}

// decodePod reads the fields of a Pod that rules read into a Pod that
// holds only those (see podscan.go): Request.Pod is the engine's input, not
// a copy of the object for other uses. What the scanner leaves to an exact
// decoder, encoding/json decodes whole: it defines what a Pod in JSON
// means, rules read a whole Pod as they read a lean one, and only unusual
// input (never the API server's) pays for it.
func decodePod(raw []byte) (*corev1.Pod, error) {
	if pod := scanPodBytes(raw); pod != nil {
		return pod, nil
	}
	pod := &corev1.Pod{}
	if err := json.Unmarshal(raw, pod); err != nil {
		return nil, err
	}
	return pod, nil
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
