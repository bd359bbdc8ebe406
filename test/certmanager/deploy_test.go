package certmanager

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"

	"github.com/policy-webhook/policy-webhook/hack/devenv"
)

// kubectlBinary is the kubectl `make tools` builds next to kube-apiserver.
func kubectlBinary(t *testing.T) string {
	t.Helper()
	assets := os.Getenv(devenv.AssetsEnv)
	if assets == "" {
		if testing.Short() {
			t.Skip(devenv.AssetsEnv + " is not set (-short): skipping the tests that run kubectl")
		}
		t.Fatal(devenv.AssetsEnv + " is not set: run `make test`, which builds kubectl (`make tools`) and exports it")
	}
	bin := filepath.Join(assets, "kubectl")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no kubectl in %s=%s (run `make tools`): %v", devenv.AssetsEnv, assets, err)
	}
	return bin
}

// TestKubectlKustomize checks that `kubectl kustomize manifests/default`,
// the README's way to look at the install, renders what the tests check.
func TestKubectlKustomize(t *testing.T) {
	kubectl := kubectlBinary(t)
	for _, dir := range []string{"default", "overlays/fail-open"} {
		out, err := exec.Command(kubectl, "kustomize", filepath.Join(manifestsDir, dir)).Output()
		if err != nil {
			t.Fatalf("kubectl kustomize manifests/%s: %v %s", dir, err, stderrOf(err))
		}
		got, err := decodeObjects(out)
		if err != nil {
			t.Fatal(err)
		}
		assertSameObjects(t, got, render(t, dir), nil)
	}
}

// TestDeployRender checks the install `make deploy IMG=...` applies
// (hack/deploy.sh render): the chosen install with the image set, however
// IMG is written, and nothing else changed.
func TestDeployRender(t *testing.T) {
	kubectl := kubectlBinary(t)
	base := render(t, "default")
	failOpen := render(t, "overlays/fail-open")
	for _, tc := range []struct {
		img, dir, components string
		want                 []*unstructured.Unstructured
		extra                []string // keys of the objects a component adds
	}{
		{img: "registry.example.com/platform/policy-webhook:v1.2.3", want: base},
		{img: "localhost:5000/policy-webhook:dev", want: base},
		{img: "registry.example.com/policy-webhook@sha256:" + strings.Repeat("ab", 32), want: base},
		{img: "registry.example.com:443/policy-webhook:v1@sha256:" + strings.Repeat("cd", 32), want: base},
		{img: "registry.example.com/policy-webhook:v1", dir: "manifests/overlays/fail-open", want: failOpen},
		{img: "registry.example.com/policy-webhook:v1", components: "manifests/components/servicemonitor", want: base,
			extra: []string{"ServiceMonitor/policy-system/policy-webhook", "ClusterRoleBinding/policy-webhook-metrics-reader"}},
	} {
		t.Run(tc.img+" "+tc.dir+" "+tc.components, func(t *testing.T) {
			out, err := deployScript(t, kubectl, "render", tc.img, tc.dir, tc.components)
			if err != nil {
				t.Fatalf("hack/deploy.sh render: %v %s", err, stderrOf(err))
			}
			got, err := decodeObjects(out)
			if err != nil {
				t.Fatal(err)
			}
			var extra []*unstructured.Unstructured
			kept := got[:0:0]
			for _, o := range got {
				if slices.Contains(tc.extra, key(o)) {
					extra = append(extra, o)
					continue
				}
				kept = append(kept, o)
			}
			if len(extra) != len(tc.extra) {
				t.Errorf("got %d of the objects %v, want all %d", len(extra), tc.extra, len(tc.extra))
			}
			_, c := webhookDeployment(t, kept)
			if c.Image != tc.img {
				t.Errorf("image %q, want %q", c.Image, tc.img)
			}
			// Apart from the image, the same install.
			assertSameObjects(t, kept, tc.want, func(o *unstructured.Unstructured) {
				if o.GetKind() != "Deployment" {
					return
				}
				containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
				for _, c := range containers {
					delete(c.(map[string]any), "image")
				}
				_ = unstructured.SetNestedSlice(o.Object, containers, "spec", "template", "spec", "containers")
			})
		})
	}

	t.Run("an image without a tag or digest is refused", func(t *testing.T) {
		out, err := deployScript(t, kubectl, "render", "registry.example.com/policy-webhook", "", "")
		if err == nil || !strings.Contains(stderrOf(err), "neither a tag nor a digest") {
			t.Errorf("rendered %d bytes, error %v %s; want a refusal", len(out), err, stderrOf(err))
		}
	})
	t.Run("a missing component is refused", func(t *testing.T) {
		_, err := deployScript(t, kubectl, "render", "registry.example.com/policy-webhook:v1", "", "manifests/components/nope")
		if err == nil || !strings.Contains(stderrOf(err), "component manifests/components/nope") {
			t.Errorf("error %v %s; want a refusal naming the component", err, stderrOf(err))
		}
	})
	leftovers, _ := filepath.Glob(filepath.Join("..", "..", ".deploy.*"))
	if len(leftovers) > 0 {
		t.Errorf("hack/deploy.sh left its temporary overlays behind: %v", leftovers)
	}
}

// deployScript runs hack/deploy.sh from the repository root, with env
// added to its environment.
func deployScript(t *testing.T, kubectl, cmd, img, dir, components string, env ...string) ([]byte, error) {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command(filepath.Join(root, "hack", "deploy.sh"), cmd)
	c.Dir = root
	if dir == "" {
		dir = "manifests/default"
	}
	c.Env = append(os.Environ(), "IMG="+img, "KUSTOMIZE_DIR="+dir, "COMPONENTS="+components, "KUBECTL="+kubectl)
	c.Env = append(c.Env, env...)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return out, &exitError{err: err, stderr: stderr.String()}
	}
	return out, nil
}

// exitError keeps a command's stderr with its error.
type exitError struct {
	err    error
	stderr string
}

func (e *exitError) Error() string { return e.err.Error() }

// stderrOf is the stderr of a failed command, if err carries it.
func stderrOf(err error) string {
	if e := (*exitError)(nil); errors.As(err, &e) {
		return e.stderr
	}
	if e := (*exec.ExitError)(nil); errors.As(err, &e) {
		return string(e.Stderr)
	}
	return ""
}

// assertSameObjects fails unless got and want hold the same objects in the
// same order, after normalize (if any) is applied to copies of both.
func assertSameObjects(t *testing.T, got, want []*unstructured.Unstructured, normalize func(*unstructured.Unstructured)) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d objects, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i].DeepCopy(), want[i].DeepCopy()
		if normalize != nil {
			normalize(g)
			normalize(w)
		}
		if !equality.Semantic.DeepEqual(g.Object, w.Object) {
			t.Errorf("object %d: %s differs from %s", i, key(got[i]), key(want[i]))
		}
	}
}

// deployVerify runs `hack/deploy.sh verify` against the control plane of
// cfg, giving up after timeout.
func deployVerify(t *testing.T, cfg *rest.Config, timeout string) ([]byte, error) {
	t.Helper()
	kc, err := devenv.KubeConfigFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return deployScript(t, kubectlBinary(t), "verify", "", "", "", "KUBECONFIG="+path, "TIMEOUT="+timeout)
}
