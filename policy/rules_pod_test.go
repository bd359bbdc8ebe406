package policy

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
)

// evalImage judges a Pod whose only container runs image.
func evalImage(t *testing.T, set *Set, img string) Decision {
	t.Helper()
	pod := compliantPod()
	pod.Spec.InitContainers = nil
	pod.Spec.Containers[0].Image = img
	return set.Evaluate(podRequest(pod), testCluster())
}

func TestAllowedRegistries(t *testing.T) {
	tests := []struct {
		name    string
		allowed []string
		image   string
		ok      bool
	}{
		{"under the host", []string{"registry.example.com"}, "registry.example.com/x/y:1", true},
		{"under the host, trailing slash", []string{"registry.example.com/"}, "registry.example.com/x/y:1", true},
		{"host is a prefix of a longer host", []string{"registry.example.com"}, "registry.example.com.evil.io/x:1", false},
		{"host is a prefix of a longer host, trailing slash", []string{"registry.example.com/"}, "registry.example.com.evil.io/x:1", false},
		{"host followed by a dash", []string{"registry.example.com"}, "registry.example.com-x/y:1", false},
		{"host with a port is another registry", []string{"registry.example.com/"}, "registry.example.com:5000/x:1", false},
		{"port allowed explicitly", []string{"registry.example.com:5000/"}, "registry.example.com:5000/x:1", true},
		{"path prefix", []string{"ghcr.io/acme/"}, "ghcr.io/acme/app:1", true},
		{"path prefix, nested", []string{"ghcr.io/acme"}, "ghcr.io/acme/team/app:1", true},
		{"path prefix is the repository itself", []string{"ghcr.io/acme/"}, "ghcr.io/acme:1", true},
		{"path prefix of a longer organisation", []string{"ghcr.io/acme/"}, "ghcr.io/acme-evil/app:1", false},
		{"path prefix without slash of a longer organisation", []string{"ghcr.io/acme"}, "ghcr.io/acmex/app:1", false},
		{"other registry", []string{"ghcr.io/acme/"}, "quay.io/acme/app:1", false},
		{"short name is docker.io/library", []string{"docker.io/library/"}, "nginx:1.27", true},
		{"short name is under docker.io", []string{"docker.io"}, "nginx:1.27", true},
		{"short name is not under another registry", []string{"registry.example.com/"}, "nginx:1.27", false},
		{"index.docker.io entry is docker.io", []string{"index.docker.io/"}, "nginx:1.27", true},
		{"index.docker.io image is docker.io", []string{"docker.io/library/"}, "index.docker.io/library/nginx:1.27", true},
		{"docker.io user image is not library", []string{"docker.io/library/"}, "bitnami/redis:7", false},
		{"docker.io organisation", []string{"docker.io/bitnami/"}, "bitnami/redis:7", true},
		{"a bare host-like name is a docker.io repository", []string{"registry.example.com/"}, "registry.example.com:1", false},
		{"localhost", []string{"localhost/"}, "localhost/app:1", true},
		{"registry-1.docker.io is the host the image names", []string{"registry-1.docker.io/"}, "registry-1.docker.io/library/nginx:1", true},
		{"registry-1.docker.io is not docker.io to the runtime's parser", []string{"registry-1.docker.io/"}, "nginx:1", false},
		{"image host in upper case", []string{"registry.example.com/"}, "Registry.Example.com/x:1", true},
		{"entry host in upper case", []string{"Registry.Example.COM/team/"}, "registry.example.com/team/x:1", true},
		{"upper case host is still a boundary", []string{"registry.example.com/"}, "Registry.Example.com.evil.io/x:1", false},
		{"second entry", []string{"quay.io/", "ghcr.io/acme/"}, "ghcr.io/acme/app:1", true},
		{"digest only", []string{"ghcr.io/acme/"}, "ghcr.io/acme/app@" + digestA, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := clusterPolicy(t, "pods:\n  allowedRegistries: ["+strings.Join(tt.allowed, ", ")+"]\n")
			d := evalImage(t, set, tt.image)
			if tt.ok {
				checkViolations(t, d.Violations)
			} else {
				checkViolations(t, d.Violations, want{ruleRegistries, "spec.containers[0].image", "which is not under an allowed registry"})
			}
			if d.Allowed != tt.ok {
				t.Errorf("Allowed = %v, want %v", d.Allowed, tt.ok)
			}
		})
	}
}

func TestAllowedRegistriesMessage(t *testing.T) {
	set := clusterPolicy(t, "pods:\n  allowedRegistries: [registry.example.com/, ghcr.io/acme]\n")
	d := evalImage(t, set, "nginx")
	want := `image "nginx" resolves to docker.io/library/nginx:latest, which is not under an allowed registry (registry.example.com/, ghcr.io/acme/)`
	if len(d.Violations) != 1 || d.Violations[0].Message != want {
		t.Fatalf("violations %v, want one with message %q", d.Violations, want)
	}
}

func TestInvalidImage(t *testing.T) {
	tests := []struct{ policy, rule string }{
		{"allowedRegistries: [docker.io/]", ruleRegistries},
		{"disallowedTags: [latest]", ruleTags},
		{"requireDigest: true", ruleDigest},
	}
	for _, tt := range tests {
		t.Run(tt.rule, func(t *testing.T) {
			d := evalImage(t, clusterPolicy(t, "pods:\n  "+tt.policy+"\n"), "Nginx:1")
			checkViolations(t, d.Violations, want{tt.rule, "spec.containers[0].image", `image "Nginx:1" is not a valid image reference`})
		})
	}
	t.Run("huge", func(t *testing.T) {
		huge := "registry.example.com/" + strings.Repeat("a", 1<<20)
		d := evalImage(t, clusterPolicy(t, "pods:\n  allowedRegistries: [registry.example.com/]\n"), huge)
		checkViolations(t, d.Violations, want{ruleRegistries, "spec.containers[0].image",
			`image "registry.example.com/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"... is not a valid image reference: it is 1048597 characters long; no valid reference is longer than 1024`})
	})
	t.Run("rules that do not read images ignore it", func(t *testing.T) {
		d := evalImage(t, clusterPolicy(t, "pods:\n  forbidPrivileged: true\n"), "Nginx:1")
		checkViolations(t, d.Violations)
	})
}

func TestDisallowedTags(t *testing.T) {
	tests := []struct {
		name, tags, image, msg string // msg "" means allowed
	}{
		{"no tag means latest", "[latest]", "nginx", `image "nginx" has no tag, so it means tag "latest", which is not allowed`},
		{"explicit latest", "[latest]", "nginx:latest", `image "nginx:latest" uses tag "latest", which is not allowed`},
		{"pinned version", "[latest]", "nginx:1.27", ""},
		{"digest only has no tag", "[latest]", "nginx@" + digestA, ""},
		{"latest with a digest still names latest", "[latest]", "nginx:latest@" + digestA, `uses tag "latest"`},
		{"another listed tag", "[latest, dev]", "ghcr.io/acme/app:dev", `uses tag "dev"`},
		{"no tag with latest not listed", "[dev]", "nginx", ""},
		{"tags are case-sensitive", "[latest]", "nginx:Latest", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := evalImage(t, clusterPolicy(t, "pods:\n  disallowedTags: "+tt.tags+"\n"), tt.image)
			if tt.msg == "" {
				checkViolations(t, d.Violations)
				return
			}
			checkViolations(t, d.Violations, want{ruleTags, "spec.containers[0].image", tt.msg})
		})
	}
}

func TestRequireDigest(t *testing.T) {
	tests := []struct {
		image, msg string
	}{
		{"nginx:1.27", `image "nginx:1.27" is not pinned by digest: use docker.io/library/nginx@sha256:<digest>`},
		{"nginx", "is not pinned by digest"},
		{"nginx@" + digestA, ""},
		{"ghcr.io/acme/app:1@" + digestA, ""},
	}
	for _, tt := range tests {
		t.Run(tt.image, func(t *testing.T) {
			d := evalImage(t, clusterPolicy(t, "pods:\n  requireDigest: true\n"), tt.image)
			if tt.msg == "" {
				checkViolations(t, d.Violations)
				return
			}
			checkViolations(t, d.Violations, want{ruleDigest, "spec.containers[0].image", tt.msg})
		})
	}
}

func TestRequiredLabels(t *testing.T) {
	set := clusterPolicy(t, "pods:\n  requiredLabels: [app, team, example.com/owner]\n")
	tests := []struct {
		name   string
		labels map[string]string
		wants  []want
	}{
		{"all present", map[string]string{"app": "a", "team": "b", "example.com/owner": "c"}, nil},
		{"empty value counts as present", map[string]string{"app": "", "team": "", "example.com/owner": ""}, nil},
		{"one missing", map[string]string{"app": "a", "example.com/owner": "c"}, []want{{ruleLabels, "metadata.labels[team]", `missing required label "team"`}}},
		{"none", nil, []want{
			{ruleLabels, "metadata.labels[app]", `"app"`},
			{ruleLabels, "metadata.labels[team]", `"team"`},
			{ruleLabels, "metadata.labels[example.com/owner]", `"example.com/owner"`},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := compliantPod()
			pod.Labels = tt.labels
			checkViolations(t, set.Evaluate(podRequest(pod), testCluster()).Violations, tt.wants...)
		})
	}
}

func TestForbidPrivileged(t *testing.T) {
	set := clusterPolicy(t, "pods:\n  forbidPrivileged: true\n")
	tests := []struct {
		name  string
		edit  func(*corev1.Pod)
		wants []want
	}{
		{"no securityContext", func(*corev1.Pod) {}, nil},
		{"privileged false", func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(false)}
		}, nil},
		{"container privileged", func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
		}, []want{{rulePrivileged, "spec.containers[0].securityContext.privileged", `container "web" is privileged`}}},
		{"init container privileged", func(p *corev1.Pod) {
			p.Spec.InitContainers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
		}, []want{{rulePrivileged, "spec.initContainers[0].securityContext.privileged", `container "migrate" is privileged`}}},
		{"ephemeral container privileged", func(p *corev1.Pod) {
			p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
				Name: "debug", Image: "busybox:1", SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)},
			}}}
		}, []want{{rulePrivileged, "spec.ephemeralContainers[0].securityContext.privileged", `container "debug" is privileged`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := compliantPod()
			tt.edit(pod)
			checkViolations(t, set.Evaluate(podRequest(pod), testCluster()).Violations, tt.wants...)
		})
	}
}

func TestForbidHostNamespaces(t *testing.T) {
	set := clusterPolicy(t, "pods:\n  forbidHostNamespaces: true\n")
	tests := []struct {
		name  string
		edit  func(*corev1.PodSpec)
		wants []want
	}{
		{"none", func(*corev1.PodSpec) {}, nil},
		{"hostNetwork", func(s *corev1.PodSpec) { s.HostNetwork = true }, []want{{ruleHostNamespaces, "spec.hostNetwork", "network namespace"}}},
		{"hostPID", func(s *corev1.PodSpec) { s.HostPID = true }, []want{{ruleHostNamespaces, "spec.hostPID", "process namespace"}}},
		{"hostIPC", func(s *corev1.PodSpec) { s.HostIPC = true }, []want{{ruleHostNamespaces, "spec.hostIPC", "IPC namespace"}}},
		{"all three", func(s *corev1.PodSpec) { s.HostNetwork, s.HostPID, s.HostIPC = true, true, true }, []want{
			{ruleHostNamespaces, "spec.hostNetwork", ""},
			{ruleHostNamespaces, "spec.hostPID", ""},
			{ruleHostNamespaces, "spec.hostIPC", ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := compliantPod()
			tt.edit(&pod.Spec)
			checkViolations(t, set.Evaluate(podRequest(pod), testCluster()).Violations, tt.wants...)
		})
	}
}

func TestForbidHostPath(t *testing.T) {
	set := clusterPolicy(t, "pods:\n  forbidHostPath: true\n")
	pod := compliantPod()
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "docker-sock", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/run/docker.sock"}}},
	}
	checkViolations(t, set.Evaluate(podRequest(pod), testCluster()).Violations,
		want{ruleHostPath, "spec.volumes[1].hostPath", `volume "docker-sock" mounts host path "/var/run/docker.sock"`})

	pod.Spec.Volumes = pod.Spec.Volumes[:1]
	checkViolations(t, set.Evaluate(podRequest(pod), testCluster()).Violations)
}

func TestRequireRunAsNonRoot(t *testing.T) {
	set := clusterPolicy(t, "pods:\n  requireRunAsNonRoot: true\n")
	const containerField = "spec.containers[0].securityContext."
	tests := []struct {
		name                   string
		podNonRoot, ctrNonRoot *bool
		podUser, ctrUser       *int64
		wants                  []want
	}{
		{name: "pod sets true", podNonRoot: ptr.To(true)},
		{name: "container sets true", ctrNonRoot: ptr.To(true)},
		{name: "neither sets it", wants: []want{{ruleRunAsNonRoot, containerField + "runAsNonRoot", `container "web" does not set runAsNonRoot: true, nor does the pod's securityContext`}}},
		{name: "container false overrides pod true", podNonRoot: ptr.To(true), ctrNonRoot: ptr.To(false),
			wants: []want{{ruleRunAsNonRoot, containerField + "runAsNonRoot", `container "web" sets runAsNonRoot: false`}}},
		{name: "container true overrides pod false", podNonRoot: ptr.To(false), ctrNonRoot: ptr.To(true)},
		{name: "pod false inherited", podNonRoot: ptr.To(false),
			wants: []want{{ruleRunAsNonRoot, "spec.securityContext.runAsNonRoot", `container "web" inherits runAsNonRoot: false from the pod`}}},
		{name: "container runs as user 0", podNonRoot: ptr.To(true), ctrUser: ptr.To[int64](0),
			wants: []want{{ruleRunAsNonRoot, containerField + "runAsUser", `container "web" runs as user 0 (root)`}}},
		{name: "pod runs as user 0", podNonRoot: ptr.To(true), podUser: ptr.To[int64](0),
			wants: []want{{ruleRunAsNonRoot, "spec.securityContext.runAsUser", `container "web" inherits user 0 (root) from the pod`}}},
		{name: "container user overrides pod user 0", podNonRoot: ptr.To(true), podUser: ptr.To[int64](0), ctrUser: ptr.To[int64](1000)},
		{name: "container user 0 overrides pod user", podNonRoot: ptr.To(true), podUser: ptr.To[int64](1000), ctrUser: ptr.To[int64](0),
			wants: []want{{ruleRunAsNonRoot, containerField + "runAsUser", "runs as user 0"}}},
		{name: "non-zero users", podNonRoot: ptr.To(true), podUser: ptr.To[int64](1000), ctrUser: ptr.To[int64](2000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := compliantPod()
			pod.Spec.InitContainers = nil
			pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: tt.podNonRoot, RunAsUser: tt.podUser}
			if tt.ctrNonRoot != nil || tt.ctrUser != nil {
				pod.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsNonRoot: tt.ctrNonRoot, RunAsUser: tt.ctrUser}
			}
			checkViolations(t, set.Evaluate(podRequest(pod), testCluster()).Violations, tt.wants...)
		})
	}
	t.Run("no pod securityContext", func(t *testing.T) {
		pod := compliantPod()
		pod.Spec.SecurityContext = nil
		pod.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsNonRoot: ptr.To(true)}
		checkViolations(t, set.Evaluate(podRequest(pod), testCluster()).Violations,
			want{ruleRunAsNonRoot, "spec.initContainers[0].securityContext.runAsNonRoot", `container "migrate" does not set`})
	})
}

func TestRequireResourceLimits(t *testing.T) {
	set := clusterPolicy(t, "pods:\n  requireResourceLimits: [cpu, memory]\n")
	pod := compliantPod()
	checkViolations(t, set.Evaluate(podRequest(pod), testCluster()).Violations)

	pod.Spec.InitContainers[0].Resources = corev1.ResourceRequirements{}
	// Requests are not limits.
	pod.Spec.Containers[0].Resources = corev1.ResourceRequirements{
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")},
		Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
	}
	// Ephemeral containers may not set resources, so the rule leaves them out.
	pod.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "busybox:1"}}}
	checkViolations(t, set.Evaluate(podRequest(pod), testCluster()).Violations,
		want{ruleLimits, "spec.initContainers[0].resources.limits.cpu", `container "migrate" sets no cpu limit`},
		want{ruleLimits, "spec.initContainers[0].resources.limits.memory", `container "migrate" sets no memory limit`},
		want{ruleLimits, "spec.containers[0].resources.limits.memory", `container "web" sets no memory limit`},
	)
}

// TestEveryContainerKind: init, regular and ephemeral containers are all
// judged, in that order, each named by its own field path.
func TestEveryContainerKind(t *testing.T) {
	set := clusterPolicy(t, "pods:\n  allowedRegistries: [registry.example.com/]\n  disallowedTags: [latest]\n")
	pod := compliantPod()
	pod.Spec.InitContainers = append(pod.Spec.InitContainers, corev1.Container{Name: "setup", Image: "busybox"})
	for i := 1; i <= 11; i++ {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "c" + itoa(i), Image: "registry.example.com/team-a/c:1"})
	}
	pod.Spec.Containers[11].Image = "quay.io/acme/sidecar:1"
	pod.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "registry.example.com/tools/debug"}}}
	d := set.Evaluate(podRequest(pod), testCluster())
	checkViolations(t, d.Violations,
		want{ruleRegistries, "spec.initContainers[1].image", `image "busybox" resolves to docker.io/library/busybox:latest`},
		want{ruleTags, "spec.initContainers[1].image", `image "busybox" has no tag`},
		want{ruleRegistries, "spec.containers[11].image", `image "quay.io/acme/sidecar:1"`},
		want{ruleTags, "spec.ephemeralContainers[0].image", `image "registry.example.com/tools/debug" has no tag`},
	)
	if d.Allowed {
		t.Error("allowed, want denied")
	}
}

// TestAllPodRules runs every pod rule at once over a compliant Pod, so a
// rule that fires where it should not shows up here.
func TestAllPodRules(t *testing.T) {
	set := clusterPolicy(t, `pods:
  allowedRegistries: [registry.example.com/]
  disallowedTags: [latest]
  requireDigest: true
  requiredLabels: [app, team]
  forbidPrivileged: true
  forbidHostNamespaces: true
  forbidHostPath: true
  requireRunAsNonRoot: true
  requireResourceLimits: [cpu, memory]
`)
	d := set.Evaluate(podRequest(compliantPod()), testCluster())
	if !d.Allowed || len(d.Violations) != 0 {
		t.Fatalf("compliant pod: allowed=%v violations=%v", d.Allowed, d.Violations)
	}
}

// Image volumes are images the kubelet pulls: the image rules judge their
// references where they are written.
func TestImageVolumesAreJudged(t *testing.T) {
	set := clusterPolicy(t, "pods:\n  allowedRegistries: [registry.example.com/]\n  disallowedTags: [latest]\n  requireDigest: true\n")
	pod := compliantPod()
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "model", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: "evil.io/models/llm"}}},
		{Name: "ok", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: "registry.example.com/models/a:1@" + digestA}}},
	}
	checkViolations(t, set.Evaluate(podRequest(pod), testCluster()).Violations,
		want{ruleRegistries, "spec.volumes[1].image.reference", `"evil.io/models/llm" resolves to evil.io/models/llm:latest`},
		want{ruleTags, "spec.volumes[1].image.reference", `has no tag, so it means tag "latest"`},
		want{ruleDigest, "spec.volumes[1].image.reference", "not pinned by digest"},
	)
}
