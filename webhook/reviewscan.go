package webhook

import (
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/policy-webhook/policy-webhook/internal/jsonscan"
	"github.com/policy-webhook/policy-webhook/policy"
)

// The member names of the AdmissionReview types, for jsonscan's Unknown.
var (
	reviewNames   = []string{"apiVersion", "kind", "request", "response"}
	requestNames  = []string{"uid", "kind", "resource", "subResource", "requestKind", "requestResource", "requestSubResource", "name", "namespace", "operation", "userInfo", "object", "oldObject", "dryRun", "options"}
	gvkNames      = []string{"group", "version", "kind"}
	gvrNames      = []string{"group", "version", "resource"}
	userInfoNames = []string{"username", "uid", "groups", "extra"}
)

// scanReview is readReview's fast path: one scan of the validated body,
// Pods included when pods is set. It reports false when the body is not
// valid JSON or holds anything the scanner does not read exactly (see
// jsonscan); r is then partly written and encoding/json reads the body
// instead.
func scanReview(body []byte, r *admissionv1.AdmissionRequest, pods bool) (decoded, bool) {
	if !jsonscan.Valid(body) {
		return decoded{}, false
	}
	var (
		s    jsonscan.Scanner
		in   decoded
		seen uint64
	)
	s.Reset(body)
	if s.Object() {
		for name, ok := s.Member(); ok; name, ok = s.Member() {
			switch string(name) {
			case "apiVersion":
				if s.Once(&seen, 0) {
					in.apiVersion, _ = s.String()
				}
			case "kind":
				if s.Once(&seen, 1) {
					in.kind, _ = s.String()
				}
			case "request":
				if s.Once(&seen, 2) {
					scanRequest(&s, r, pods, &in)
				}
			case "response":
				// Never sent to a webhook; encoding/json judges it.
				s.GiveUp("a response in the review")
			default:
				s.Unknown(name, reviewNames)
			}
		}
	}
	return in, !s.Failed()
}

func scanRequest(s *jsonscan.Scanner, r *admissionv1.AdmissionRequest, pods bool, in *decoded) {
	if !s.Object() {
		return
	}
	var seen uint64
	for name, ok := s.Member(); ok; name, ok = s.Member() {
		switch string(name) {
		case "uid":
			if s.Once(&seen, 0) {
				uid, _ := s.String()
				r.UID = types.UID(uid)
			}
		case "kind":
			if s.Once(&seen, 1) {
				scanGVK(s, &r.Kind)
			}
		case "resource":
			if s.Once(&seen, 2) {
				scanGVR(s, &r.Resource)
			}
		case "subResource":
			if s.Once(&seen, 3) {
				r.SubResource, _ = s.String()
			}
		case "requestKind":
			if s.Once(&seen, 4) && !s.Null() {
				r.RequestKind = &metav1.GroupVersionKind{}
				scanGVK(s, r.RequestKind)
			}
		case "requestResource":
			if s.Once(&seen, 5) && !s.Null() {
				r.RequestResource = &metav1.GroupVersionResource{}
				scanGVR(s, r.RequestResource)
			}
		case "requestSubResource":
			if s.Once(&seen, 6) {
				r.RequestSubResource, _ = s.String()
			}
		case "name":
			if s.Once(&seen, 7) {
				r.Name, _ = s.String()
			}
		case "namespace":
			if s.Once(&seen, 8) {
				r.Namespace, _ = s.String()
			}
		case "operation":
			if s.Once(&seen, 9) {
				op, _ := s.String()
				r.Operation = admissionv1.Operation(op)
			}
		case "userInfo":
			if s.Once(&seen, 10) {
				scanUserInfo(s, &r.UserInfo)
			}
		case "object":
			if s.Once(&seen, 11) {
				in.pod = scanObject(s, r, &r.Object, pods)
			}
		case "oldObject":
			if s.Once(&seen, 12) {
				in.oldPod = scanObject(s, r, &r.OldObject, pods)
			}
		case "dryRun":
			if s.Once(&seen, 13) {
				if v, ok := s.Bool(); ok {
					r.DryRun = &v
				}
			}
		case "options":
			if s.Once(&seen, 14) {
				scanObject(s, r, &r.Options, false)
			}
		default:
			s.Unknown(name, requestNames)
		}
	}
}

// scanObject takes a raw object as a slice of the body, which lives as
// long as the request, and decodes it as a Pod in the same pass when asked
// and when the resource read so far says pods (the API server writes
// resource before object).
func scanObject(s *jsonscan.Scanner, r *admissionv1.AdmissionRequest, raw *runtime.RawExtension, pods bool) *corev1.Pod {
	if s.Null() {
		return nil
	}
	start := s.Offset()
	var pod *corev1.Pod
	if pods && policy.KindOf(r) == policy.KindPod {
		pod = policy.ScanPod(s)
	} else {
		s.Skip()
	}
	raw.Raw = s.Bytes(start, s.Offset())
	return pod
}

func scanGVK(s *jsonscan.Scanner, k *metav1.GroupVersionKind) {
	scanStringFields(s, gvkNames, &k.Group, &k.Version, &k.Kind)
}

func scanGVR(s *jsonscan.Scanner, r *metav1.GroupVersionResource) {
	scanStringFields(s, gvrNames, &r.Group, &r.Version, &r.Resource)
}

// scanStringFields reads an object whose members are strings, the one
// named names[i] into fields[i].
func scanStringFields(s *jsonscan.Scanner, names []string, fields ...*string) {
	if !s.Object() {
		return
	}
	var seen uint64
members:
	for name, ok := s.Member(); ok; name, ok = s.Member() {
		for i, n := range names {
			if string(name) == n {
				if s.Once(&seen, uint(i)) {
					*fields[i], _ = s.String()
				}
				continue members
			}
		}
		s.Unknown(name, names)
	}
}

func scanUserInfo(s *jsonscan.Scanner, u *authenticationv1.UserInfo) {
	if !s.Object() {
		return
	}
	var seen uint64
	for name, ok := s.Member(); ok; name, ok = s.Member() {
		switch string(name) {
		case "username":
			if s.Once(&seen, 0) {
				u.Username, _ = s.String()
			}
		case "uid":
			if s.Once(&seen, 1) {
				u.UID, _ = s.String()
			}
		case "groups":
			if s.Once(&seen, 2) {
				u.Groups = scanStrings(s)
			}
		case "extra":
			if s.Once(&seen, 3) && s.Object() {
				u.Extra = map[string]authenticationv1.ExtraValue{}
				for _, ok := s.Member(); ok; _, ok = s.Member() {
					k := s.Key()
					if s.Null() {
						s.GiveUp("null extra value")
						return
					}
					u.Extra[k] = scanStrings(s)
				}
			}
		default:
			s.Unknown(name, userInfoNames)
		}
	}
}

// scanStrings reads a list of strings: nil for null, empty but not nil
// for [], as encoding/json leaves them.
func scanStrings(s *jsonscan.Scanner) []string {
	if !s.Array() {
		return nil
	}
	out := []string{}
	for s.Elem() {
		v, ok := s.String()
		if !ok {
			s.GiveUp("null in a list of strings")
			return nil
		}
		out = append(out, v)
	}
	return out
}
