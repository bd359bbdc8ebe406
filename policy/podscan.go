package policy

import (
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policy-webhook/policy-webhook/internal/jsonscan"
)

// The member names, in JSON, of each podFields struct, for jsonscan's
// Unknown: a name missing here would be skipped, which the differential
// tests in podfields_test.go catch.
var (
	podNames         = []string{"metadata", "spec"}
	metaNames        = []string{"name", "generateName", "namespace", "labels", "deletionTimestamp"}
	specNames        = []string{"initContainers", "containers", "ephemeralContainers", "securityContext", "hostNetwork", "hostPID", "hostIPC", "volumes"}
	containerNames   = []string{"name", "image", "securityContext", "resources"}
	resourcesNames   = []string{"limits"}
	securityNames    = []string{"privileged", "runAsNonRoot", "runAsUser"}
	podSecurityNames = []string{"runAsNonRoot", "runAsUser"}
	volumeNames      = []string{"name", "hostPath"}
)

// ScanPod reads the Pod that is the next value of s, as DecodeObject
// decodes it, for a caller that reads an AdmissionReview with a scanner.
// It returns nil when s gave up: the caller then decodes the text with
// encoding/json.
func ScanPod(s *jsonscan.Scanner) *corev1.Pod {
	var f podFields
	scanPod(s, &f)
	if s.Failed() {
		return nil
	}
	return f.pod()
}

// scanPodBytes is DecodeObject's fast path: nil when raw is not valid
// JSON or holds what the scanner does not read exactly.
func scanPodBytes(raw []byte) *corev1.Pod {
	if !jsonscan.Valid(raw) {
		return nil
	}
	var s jsonscan.Scanner
	s.Reset(raw)
	return ScanPod(&s)
}

func scanPod(s *jsonscan.Scanner, f *podFields) {
	if !s.Object() {
		return
	}
	var seen uint64
	for name, ok := s.Member(); ok; name, ok = s.Member() {
		switch string(name) {
		case "metadata":
			if s.Once(&seen, 0) {
				scanMeta(s, f)
			}
		case "spec":
			if s.Once(&seen, 1) {
				scanSpec(s, f)
			}
		default:
			s.Unknown(name, podNames)
		}
	}
}

func scanMeta(s *jsonscan.Scanner, f *podFields) {
	if !s.Object() {
		return
	}
	m := &f.Metadata
	var seen uint64
	for name, ok := s.Member(); ok; name, ok = s.Member() {
		switch string(name) {
		case "name":
			if s.Once(&seen, 0) {
				m.Name, _ = s.String()
			}
		case "generateName":
			if s.Once(&seen, 1) {
				m.GenerateName, _ = s.String()
			}
		case "namespace":
			if s.Once(&seen, 2) {
				m.Namespace, _ = s.String()
			}
		case "labels":
			if s.Once(&seen, 3) {
				m.Labels = scanStringMap(s)
			}
		case "deletionTimestamp":
			if s.Once(&seen, 4) && !s.Null() {
				t := &metav1.Time{}
				if err := t.UnmarshalJSON(s.Raw()); err != nil {
					s.GiveUp("deletionTimestamp: " + err.Error())
				}
				m.DeletionTimestamp = t
			}
		default:
			s.Unknown(name, metaNames)
		}
	}
}

// scanStringMap reads an object of strings; a null map is nil.
func scanStringMap(s *jsonscan.Scanner) map[string]string {
	if !s.Object() {
		return nil
	}
	out := map[string]string{}
	for _, ok := s.Member(); ok; _, ok = s.Member() {
		key := s.Key()
		v, ok := s.String()
		if !ok {
			s.GiveUp("null map value")
		}
		out[key] = v
	}
	return out
}

func scanSpec(s *jsonscan.Scanner, f *podFields) {
	if !s.Object() {
		return
	}
	sp := &f.Spec
	var seen uint64
	for name, ok := s.Member(); ok; name, ok = s.Member() {
		switch string(name) {
		case "initContainers":
			if s.Once(&seen, 0) {
				sp.InitContainers = scanContainers(s)
			}
		case "containers":
			if s.Once(&seen, 1) {
				sp.Containers = scanContainers(s)
			}
		case "ephemeralContainers":
			if s.Once(&seen, 2) {
				sp.EphemeralContainers = scanContainers(s)
			}
		case "securityContext":
			if s.Once(&seen, 3) {
				sp.SecurityContext = scanPodSecurity(s)
			}
		case "hostNetwork":
			if s.Once(&seen, 4) {
				sp.HostNetwork, _ = s.Bool()
			}
		case "hostPID":
			if s.Once(&seen, 5) {
				sp.HostPID, _ = s.Bool()
			}
		case "hostIPC":
			if s.Once(&seen, 6) {
				sp.HostIPC, _ = s.Bool()
			}
		case "volumes":
			if s.Once(&seen, 7) {
				sp.Volumes = scanVolumes(s)
			}
		default:
			s.Unknown(name, specNames)
		}
	}
}

// scanContainers reads a list of containers: nil for null, empty but not
// nil for [], as encoding/json leaves them.
func scanContainers(s *jsonscan.Scanner) []containerFields {
	if !s.Array() {
		return nil
	}
	out := []containerFields{}
	for s.Elem() {
		if s.Null() {
			s.GiveUp("null container")
			return nil
		}
		if len(out) == cap(out) {
			out = append(make([]containerFields, 0, 2*cap(out)+2), out...)
		}
		out = out[:len(out)+1]
		scanContainer(s, &out[len(out)-1])
	}
	return out
}

func scanContainer(s *jsonscan.Scanner, c *containerFields) {
	if !s.Object() {
		return
	}
	var seen uint64
	for name, ok := s.Member(); ok; name, ok = s.Member() {
		switch string(name) {
		case "name":
			if s.Once(&seen, 0) {
				c.Name, _ = s.String()
			}
		case "image":
			if s.Once(&seen, 1) {
				c.Image, _ = s.String()
			}
		case "securityContext":
			if s.Once(&seen, 2) {
				c.SecurityContext = scanSecurity(s)
			}
		case "resources":
			if s.Once(&seen, 3) {
				scanResources(s, c)
			}
		default:
			s.Unknown(name, containerNames)
		}
	}
}

func scanResources(s *jsonscan.Scanner, c *containerFields) {
	if !s.Object() {
		return
	}
	var seen uint64
	for name, ok := s.Member(); ok; name, ok = s.Member() {
		switch string(name) {
		case "limits":
			if s.Once(&seen, 0) {
				c.Resources.Limits = scanResourceList(s)
			}
		default:
			s.Unknown(name, resourcesNames)
		}
	}
}

// scanResourceList reads quantities with Quantity's own UnmarshalJSON, as
// encoding/json does.
func scanResourceList(s *jsonscan.Scanner) corev1.ResourceList {
	if !s.Object() {
		return nil
	}
	out := corev1.ResourceList{}
	for _, ok := s.Member(); ok; _, ok = s.Member() {
		key := corev1.ResourceName(s.Key())
		if s.Null() {
			s.GiveUp("null quantity")
			return nil
		}
		var q resource.Quantity
		if err := q.UnmarshalJSON(s.Raw()); err != nil {
			s.GiveUp("quantity: " + err.Error())
			return nil
		}
		out[key] = q
	}
	return out
}

func scanSecurity(s *jsonscan.Scanner) *securityFields {
	if !s.Object() {
		return nil
	}
	sc := &securityFields{}
	var seen uint64
	for name, ok := s.Member(); ok; name, ok = s.Member() {
		switch string(name) {
		case "privileged":
			if s.Once(&seen, 0) {
				sc.Privileged = scanBoolPtr(s)
			}
		case "runAsNonRoot":
			if s.Once(&seen, 1) {
				sc.RunAsNonRoot = scanBoolPtr(s)
			}
		case "runAsUser":
			if s.Once(&seen, 2) {
				sc.RunAsUser = scanInt64Ptr(s)
			}
		default:
			s.Unknown(name, securityNames)
		}
	}
	return sc
}

func scanPodSecurity(s *jsonscan.Scanner) *podSecurityFields {
	if !s.Object() {
		return nil
	}
	sc := &podSecurityFields{}
	var seen uint64
	for name, ok := s.Member(); ok; name, ok = s.Member() {
		switch string(name) {
		case "runAsNonRoot":
			if s.Once(&seen, 0) {
				sc.RunAsNonRoot = scanBoolPtr(s)
			}
		case "runAsUser":
			if s.Once(&seen, 1) {
				sc.RunAsUser = scanInt64Ptr(s)
			}
		default:
			s.Unknown(name, podSecurityNames)
		}
	}
	return sc
}

func scanBoolPtr(s *jsonscan.Scanner) *bool {
	if v, ok := s.Bool(); ok {
		return &v
	}
	return nil
}

func scanInt64Ptr(s *jsonscan.Scanner) *int64 {
	if v, ok := s.Int64(); ok {
		return &v
	}
	return nil
}

func scanVolumes(s *jsonscan.Scanner) []volumeFields {
	if !s.Array() {
		return nil
	}
	out := []volumeFields{}
	for s.Elem() {
		if s.Null() {
			s.GiveUp("null volume")
			return nil
		}
		out = append(out, volumeFields{})
		v := &out[len(out)-1]
		if !s.Object() {
			continue
		}
		var seen uint64
		for name, ok := s.Member(); ok; name, ok = s.Member() {
			switch string(name) {
			case "name":
				if s.Once(&seen, 0) {
					v.Name, _ = s.String()
				}
			case "hostPath":
				if s.Once(&seen, 1) && !s.Null() {
					v.HostPath = &corev1.HostPathVolumeSource{}
					if err := json.Unmarshal(s.Raw(), v.HostPath); err != nil {
						s.GiveUp("hostPath: " + err.Error())
					}
				}
			default:
				s.Unknown(name, volumeNames)
			}
		}
	}
	return out
}
