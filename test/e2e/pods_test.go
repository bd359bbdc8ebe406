package e2e

import (
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const podRules = `
pods:
  allowedRegistries: [registry.example.com/]
  disallowedTags: [latest]
  requiredLabels: [app]
  forbidPrivileged: true
`

func TestPodsAdmittedAndRefused(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace(t, nil)
	mustPutPolicy(t, ns, "rules", podRules)
	app := map[string]string{"app": "web"}
	src := "ConfigMap " + ns + "/rules"

	untrusted := pod(ns, "untrusted", app, "nginx:1.27")
	untrustedMsg := podDenial(fmt.Sprintf(`policy violation: %s pods.allowedRegistries spec.containers[0].image: `+
		`image "nginx:1.27" resolves to docker.io/library/nginx:1.27, which is not under an allowed registry (registry.example.com/)`, src))
	eventuallyDenied(t, func() error { return createPod(ctx, untrusted, metav1.CreateOptions{DryRun: dryRun}) }, untrustedMsg)

	t.Run("compliant pod is created", func(t *testing.T) {
		wantAdmitted(t, createPod(ctx, pod(ns, "good", app, "registry.example.com/team/web:1.0"), metav1.CreateOptions{}))
	})
	t.Run("latest tag, implicit", func(t *testing.T) {
		err := createPod(ctx, pod(ns, "implicit-latest", app, "registry.example.com/team/web"), metav1.CreateOptions{DryRun: dryRun})
		wantDenied(t, err, podDenial(fmt.Sprintf(`policy violation: %s pods.disallowedTags spec.containers[0].image: `+
			`image "registry.example.com/team/web" has no tag, so it means tag "latest", which is not allowed: pin a version or a digest`, src)))
	})
	t.Run("every violation is listed", func(t *testing.T) {
		p := pod(ns, "privileged", nil, "registry.example.com/team/web:1.0")
		priv := true
		p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: &priv}
		err := createPod(ctx, p, metav1.CreateOptions{DryRun: dryRun})
		wantDenied(t, err, podDenial(fmt.Sprintf("2 policy violations:\n"+
			`- %[1]s pods.requiredLabels metadata.labels[app]: missing required label "app"`+"\n"+
			`- %[1]s pods.forbidPrivileged spec.containers[0].securityContext.privileged: container "c0" is privileged`, src)))
	})
	t.Run("update to an untrusted image", func(t *testing.T) {
		cur, err := env.client.CoreV1().Pods(ns).Get(ctx, "good", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Spec.Containers[0].Image = "nginx:1.27"
		_, err = env.client.CoreV1().Pods(ns).Update(ctx, cur, metav1.UpdateOptions{})
		wantDenied(t, err, untrustedMsg)
	})
	t.Run("ephemeral container", func(t *testing.T) {
		debug := func(image string) error {
			cur, err := env.client.CoreV1().Pods(ns).Get(ctx, "good", metav1.GetOptions{})
			if err != nil {
				return err
			}
			cur.Spec.EphemeralContainers = append(cur.Spec.EphemeralContainers, corev1.EphemeralContainer{
				EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: fmt.Sprintf("debug%d", len(cur.Spec.EphemeralContainers)), Image: image},
			})
			_, err = env.client.CoreV1().Pods(ns).UpdateEphemeralContainers(ctx, "good", cur, metav1.UpdateOptions{})
			return err
		}
		wantDenied(t, debug("busybox:1.36"), podDenial(fmt.Sprintf(`policy violation: %s pods.allowedRegistries spec.ephemeralContainers[0].image: `+
			`image "busybox:1.36" resolves to docker.io/library/busybox:1.36, which is not under an allowed registry (registry.example.com/)`, src)))
		wantAdmitted(t, debug("registry.example.com/tools/debug:1.0"))
	})
	t.Run("a namespace's ConfigMap policy does not judge other namespaces", func(t *testing.T) {
		other := newNamespace(t, nil)
		wantAdmitted(t, createPod(ctx, pod(other, "untrusted", nil, "nginx:1.27"), metav1.CreateOptions{DryRun: dryRun}))
	})
	t.Run("Warn policy admits with a warning", func(t *testing.T) {
		mustPutPolicy(t, ns, "owner", "enforcement: Warn\npods:\n  requiredLabels: [owner]\n")
		wc := newWarningClient(t)
		want := fmt.Sprintf(`ConfigMap %s/owner pods.requiredLabels metadata.labels[owner]: missing required label "owner"`, ns)
		eventually(t, "the Warn policy in force", func() error {
			_, err := wc.CoreV1().Pods(ns).Create(ctx, pod(ns, "no-owner", app, "registry.example.com/team/web:1.0"), metav1.CreateOptions{DryRun: dryRun})
			if err != nil {
				return err
			}
			if got := wc.take(); !slices.Contains(got, want) {
				return fmt.Errorf("warnings %q", got)
			}
			return nil
		})
		_, err := wc.CoreV1().Pods(ns).Create(ctx, pod(ns, "no-owner", app, "registry.example.com/team/web:1.0"), metav1.CreateOptions{})
		wantAdmitted(t, err)
		if got := wc.take(); !slices.Equal(got, []string{want}) {
			t.Fatalf("warnings %q, want exactly %q", got, want)
		}
	})
	t.Run("cluster-wide policy from the policy namespace", func(t *testing.T) {
		// Aimed at this test's namespaces only, so other tests are not judged by it.
		target := newNamespace(t, map[string]string{"e2e-cluster-wide": "yes"})
		name := "e2e-" + target
		spec := "match:\n  namespaceSelector:\n    matchLabels: {e2e-cluster-wide: \"yes\", " + testLabel + ": " + target + "}\n" +
			"pods:\n  requiredLabels: [tier]\n"
		mustPutPolicy(t, env.wh.PolicyNamespace, name, spec)
		t.Cleanup(func() {
			_ = env.client.CoreV1().ConfigMaps(env.wh.PolicyNamespace).Delete(ctx, name, metav1.DeleteOptions{})
		})
		eventuallyDenied(t, func() error {
			return createPod(ctx, pod(target, "no-tier", nil, "nginx:1.27"), metav1.CreateOptions{DryRun: dryRun})
		}, podDenial(fmt.Sprintf(`policy violation: ConfigMap %s/%s pods.requiredLabels metadata.labels[tier]: missing required label "tier"`,
			env.wh.PolicyNamespace, name)))
		wantAdmitted(t, createPod(ctx, pod(target, "tier", map[string]string{"tier": "web"}, "nginx:1.27"), metav1.CreateOptions{DryRun: dryRun}))
		// Deleting a policy takes it out of force.
		if err := env.client.CoreV1().ConfigMaps(env.wh.PolicyNamespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventuallyAdmitted(t, func() error {
			return createPod(ctx, pod(target, "no-tier", nil, "nginx:1.27"), metav1.CreateOptions{DryRun: dryRun})
		})
	})
}
