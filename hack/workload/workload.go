// Package workload is the Pod the benchmarks and the load harness judge: one
// realistic object, so that the in-process benchmark and the load runs
// measure the same review.
package workload

import (
	"encoding/json"
	"fmt"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// Where the Pod lives, and the image that makes it break the registry rule.
const (
	Namespace      = "team-a"
	ServiceAccount = "web"
	DeniedImage    = "docker.io/library/nginx:1.27"
)

// DeploymentPod is a Pod as a Deployment creates it, with the probes, env,
// projected token volume and managed fields of a real workload, so that its
// AdmissionReview is about 3.7 KB, the size the performance targets are
// set for. denied swaps one image for one from a
// registry the policy does not allow. containers above 2 adds sidecars
// like the first container, to see how the cost grows with them.
func DeploymentPod(denied bool, containers int) *corev1.Pod {
	limits := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("256Mi")}
	requests := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")}
	probe := &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080), Scheme: corev1.URISchemeHTTP}},
		PeriodSeconds: 10, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3,
	}
	container := func(name, image string, port int32) corev1.Container {
		return corev1.Container{
			Name: name, Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: port, Protocol: corev1.ProtocolTCP}},
			Env: []corev1.EnvVar{
				{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
			},
			Resources: corev1.ResourceRequirements{Limits: limits, Requests: requests},
			VolumeMounts: []corev1.VolumeMount{
				{Name: "config", MountPath: "/etc/app", ReadOnly: true},
				{Name: "kube-api-access-x7k2p", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true},
			},
			LivenessProbe: probe,
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
				Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
			TerminationMessagePath: "/dev/termination-log", TerminationMessagePolicy: corev1.TerminationMessageReadFile,
		}
	}
	proxyImage := "ghcr.io/acme/proxy@sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"
	if denied {
		proxyImage = DeniedImage
	}
	cs := []corev1.Container{
		container("web", "registry.example.com/team-a/web:1.4.2", 8080),
		container("proxy", proxyImage, 9090),
	}
	for i := 2; i < containers; i++ {
		cs = append(cs, container(fmt.Sprintf("sidecar-%d", i), fmt.Sprintf("registry.example.com/team-a/sidecar-%d:2.0.%d", i, i), 10000+int32(i)))
	}
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "web-7c9d8f6b5-", Namespace: Namespace,
			Labels:      map[string]string{"app": "web", "pod-template-hash": "7c9d8f6b5"},
			Annotations: map[string]string{"kubectl.kubernetes.io/restartedAt": "2026-01-12T10:04:05Z"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7c9d8f6b5", UID: "4f0c3c1e-9a7b-4d3e-8f51-2b6a0d9c7e11",
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: corev1.PodSpec{
			Containers: cs,
			Volumes: []corev1.Volume{
				{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "web-config"}}}},
				{Name: "kube-api-access-x7k2p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
					DefaultMode: ptr.To[int32](0o644),
					Sources: []corev1.VolumeProjection{
						{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](3607)}},
						{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
							Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
						{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{
							{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
					},
				}}},
			},
			RestartPolicy: corev1.RestartPolicyAlways, DNSPolicy: corev1.DNSClusterFirst,
			TerminationGracePeriodSeconds: ptr.To[int64](30), ServiceAccountName: ServiceAccount,
			SecurityContext:    &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](10001), FSGroup: ptr.To[int64](10001)},
			SchedulerName:      corev1.DefaultSchedulerName,
			EnableServiceLinks: ptr.To(true), PreemptionPolicy: ptr.To(corev1.PreemptLowerPriority),
			Tolerations: []corev1.Toleration{
				{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
				{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
			},
		},
	}
}

// CreateReview is the AdmissionReview the API server would send for a
// CREATE of pod by the ReplicaSet controller.
func CreateReview(pod *corev1.Pod, uid string) ([]byte, error) {
	return createReview(pod, pod.Namespace, metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, authenticationv1.UserInfo{
			Username: "system:serviceaccount:kube-system:replicaset-controller",
			UID:      "9b3f5a6e-2c1d-4e8f-a7b6-1d2c3e4f5a6b",
			Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"},
		}, uid)
}

// Deployment is a Deployment of replicas Pods like pod, as `kubectl apply`
// sends it: the template is pod's labels and spec.
func Deployment(name string, pod *corev1.Pod, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": pod.Labels["app"]}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: pod.Namespace, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: pod.Labels, Annotations: pod.Annotations}, Spec: pod.Spec},
		},
	}
}

// CreateDeploymentReview is the AdmissionReview the API server would send
// for a CREATE of d by a user.
func CreateDeploymentReview(d *appsv1.Deployment, uid string) ([]byte, error) {
	return createReview(d, d.Namespace, metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"},
		metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"},
		authenticationv1.UserInfo{Username: "alice", Groups: []string{"team-a", "system:authenticated"}}, uid)
}

func createReview(obj any, namespace string, gvk metav1.GroupVersionKind, gvr metav1.GroupVersionResource, user authenticationv1.UserInfo, uid string) ([]byte, error) {
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encoding the %s: %w", gvk.Kind, err)
	}
	opts, err := json.Marshal(metav1.CreateOptions{TypeMeta: metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "CreateOptions"}})
	if err != nil {
		return nil, fmt.Errorf("encoding the CreateOptions: %w", err)
	}
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: types.UID(uid), Kind: gvk, Resource: gvr, RequestKind: &gvk, RequestResource: &gvr,
			Namespace: namespace, Operation: admissionv1.Create,
			UserInfo: user,
			Object:   runtime.RawExtension{Raw: raw},
			DryRun:   ptr.To(false),
			Options:  runtime.RawExtension{Raw: opts},
		},
	}
	body, err := json.Marshal(&review)
	if err != nil {
		return nil, fmt.Errorf("encoding the AdmissionReview: %w", err)
	}
	return body, nil
}

// CELPolicy is a policy of five CEL validations that DeploymentPod passes,
// reading the object, the request and the cluster: what CEL adds to an
// admission, in the handler benchmarks and the load harness alike.
const CELPolicy = `
match: {kinds: [Pod]}
validations:
- name: probes
  expression: "object.spec.containers.all(c, has(c.livenessProbe))"
- name: app-label
  expression: "object.metadata.?labels.?app.orValue('') != ''"
- name: latest
  expression: "object.spec.containers.all(c, !c.image.endsWith(':latest'))"
- name: host-network
  expression: "!has(object.spec.hostNetwork) || !object.spec.hostNetwork"
- name: apples
  expression: "cluster.myApples(request.namespace).size() < 100"
`

// RegistriesCELPolicy is the allowed-registries rule as ValidatingAdmissionPolicy
// users write it (variables, params, messageExpression): the rule a VAP user
// brings, which benchmarks and tests compare with the built-in allowedRegistries.
const RegistriesCELPolicy = `match: {kinds: [Pod]}
params: {allowed: [registry.example.com/, ghcr.io/acme/]}
variables:
- name: images
  expression: "object.spec.containers.map(c, c.image) + (has(object.spec.initContainers) ? object.spec.initContainers.map(c, c.image) : [])"
- name: bad
  expression: "variables.images.filter(i, !params.allowed.exists(p, i.startsWith(p)))"
validations:
- name: registries
  expression: "size(variables.bad) == 0"
  messageExpression: "'denied: images not from an allowed registry: ' + variables.bad.join(', ')"
`

// QuotaByColorPolicy is the quota-by-colour example of README.md and
// docs/cel.md, read in O(1) from cluster.myAppleStats.
const QuotaByColorPolicy = `match: {kinds: [MyApple]}
params: {maxPerColor: 2}
validations:
- name: maxPerColor
  expression: >-
    cluster.myAppleStats(object.metadata.namespace, object.metadata.name)
      .byColor[object.spec.color].count < params.maxPerColor
  message: "at most 2 MyApples of one color per namespace"
  fieldPath: spec.color
`
