package chart

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	openreports "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/kube"
	ri "helm.sh/helm/v4/pkg/release"
	rcommon "helm.sh/helm/v4/pkg/release/common"
	release "helm.sh/helm/v4/pkg/release/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/policy-webhook/policy-webhook/certs"
	"github.com/policy-webhook/policy-webhook/cmd/policy-webhook/app"
	"github.com/policy-webhook/policy-webhook/controllers/reports"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/test/testenv"
	"github.com/policy-webhook/policy-webhook/webhook"
)

// A cluster-wide policy and the images on either side of it.
const (
	testPolicy = `match:
  kinds: [Pod]
pods:
  allowedRegistries: [registry.example.com/]
`
	allowedImage = "registry.example.com/team-a/app:1.0"
	deniedImage  = "docker.io/library/nginx:1.27"
)

// startControlPlane starts etcd and kube-apiserver with cert-manager's CRDs
// (the chart brings its own) and stops them when the test ends.
func startControlPlane(t *testing.T) *rest.Config {
	t.Helper()
	assets := os.Getenv(devenv.AssetsEnv)
	if assets == "" {
		if testing.Short() {
			t.Skip(devenv.AssetsEnv + " is not set (-short): skipping the install on a local control plane")
		}
		t.Fatal(devenv.ErrNoAssets)
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(moduleDir(t, "github.com/cert-manager/cert-manager"), "deploy", "crds")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		t.Fatalf("starting kube-apiserver and etcd from %s: %v", assets, err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping the control plane: %v", err)
		}
	})
	return cfg
}

// moduleDir is where the module cache holds the version of module this
// module requires.
func moduleDir(t *testing.T, module string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module).Output()
	if err != nil {
		t.Fatalf("finding module %s (go list -m): %v", module, err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		t.Fatalf("module %s is not in the module cache: run `go mod download %s`", module, module)
	}
	return dir
}

// helmConfig is Helm's action configuration for the control plane of cfg,
// storing releases as Secrets in namespace, as the helm CLI does, and
// logging to the test's output.
func helmConfig(t *testing.T, cfg *rest.Config, namespace string) *action.Configuration {
	t.Helper()
	kc, err := devenv.KubeConfigFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &path
	flags.Namespace = ptr.To(namespace)
	log := slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}).WithAttrs([]slog.Attr{slog.String("from", "helm")})
	ac := action.NewConfiguration(action.ConfigurationSetLogger(log))
	if err := ac.Init(flags, namespace, "secret"); err != nil {
		t.Fatalf("initialising Helm: %v", err)
	}
	return ac
}

// TestInstallUpgradeUninstall installs the chart with Helm on a local
// control plane with cert-manager's CRDs and its real cainjector, runs the
// webhook on 127.0.0.1 as the Deployment's ServiceAccount, and shows the
// API server calling it through the chart's registration; then upgrades the
// release and shows the calls go on with the new settings; then uninstalls
// it and shows the registration gone first.
//
// Nothing routes to a Service here (no kube-proxy, no Pod network), and test
// traffic may only go to loopback addresses. So the test checks that the
// chart's registration names the chart's Service (name, namespace, port 443,
// path) for every webhook, then repoints each webhook's clientConfig to
// https://127.0.0.1:<port><same path>, keeping the CA bundle cainjector
// injected, as test/certmanager does; everything else of the registration
// (rules, selectors, failure policy, timeout) is used as the chart renders it.
//
// Helm runs with --wait, as the README says to: the test checks that the
// webhook is not registered while the Deployment has no ready replica, then
// plays the Deployment controller's and the kubelet's part (no Pod runs
// here: the webhook runs in this process instead) and reports the replicas
// ready, after which Helm applies the registration. Helm 4's --wait watches
// the objects' status the kstatus way (for the Deployment: its observed
// generation, replica counts and Available and Progressing conditions), and
// Helm 4 applies server-side, as the helm CLI does by default.
func TestInstallUpgradeUninstall(t *testing.T) {
	cfg := startControlPlane(t)
	ctx := t.Context()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := loadChart(t)
	ac := helmConfig(t, cfg, installNamespace)
	image := []string{"image.repository=registry.example.com/policy-webhook", "image.tag=v1.0.0"}
	// The audit writes OpenReports Reports by default: install their CRDs
	// with the chart (and the PolicyReport ones, kept on uninstall too).
	values := append(slices.Clone(image), "audit.installOpenReportsCRDs=true", "audit.installPolicyReportCRDs=true")

	// helm install policy-webhook manifests/chart/policy-webhook -n policy-system --create-namespace --wait --set ...
	inst := action.NewInstall(ac)
	inst.ReleaseName = releaseName
	inst.Namespace = installNamespace
	inst.CreateNamespace = true
	inst.WaitStrategy = kube.StatusWatcherStrategy // --wait
	inst.Timeout = 2 * time.Minute
	start := time.Now()
	installed := runInBackground(func() (ri.Releaser, error) { return inst.RunWithContext(ctx, c, setValues(t, values...)) })
	// Helm waits for the Deployment: no registration yet.
	deploy := waitDeployment(t, cs, installed, 1)
	if img := deploy.Spec.Template.Spec.Containers[0].Image; img != "registry.example.com/policy-webhook:v1.0.0" {
		t.Errorf("Deployment image %q", img)
	}
	for _, crd := range []string{"admissionpolicies.policy.example.com", "policyexceptions.policy.example.com", "myapples.stable.example.com", "reports.openreports.io", "policyreports.wgpolicyk8s.io"} {
		if _, err := dynamicGet(ctx, cfg, crdResource, "", crd); err != nil {
			t.Errorf("CRD %s from the chart: %v", crd, err)
		}
	}

	// cert-manager's part: cainjector for real; the issuing controller's
	// Secret for the chart's serving Certificate, signed by a CA as the
	// chart's CA Issuer would.
	stopInjector, err := testenv.StartCAInjector(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stopInjector(); err != nil {
			t.Error(err)
		}
	})
	servingCert := getCertificate(t, cfg, "policy-webhook-serving")
	// The API server will reach the webhook at 127.0.0.1 (a URL, see
	// pointAtLoopback), so the issued certificate must name that address
	// too; the Certificate object itself is left as the chart renders it.
	servingCert.Spec.IPAddresses = []string{"127.0.0.1"}
	ca, err := certs.NewCA("policy-webhook-ca", 365*24*time.Hour) // the chart CA's duration
	if err != nil {
		t.Fatal(err)
	}
	issued, err := testenv.IssueCertificate(ca, servingCert)
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.ApplyCertificateSecret(ctx, cs, servingCert, issued); err != nil {
		t.Fatal(err)
	}

	// The kubelet's part: the Secret as files, and the webhook as a Pod of
	// the Deployment, with its ServiceAccount's RBAC.
	wh := runWebhook(t, cfg, deploy, issued)

	// Still waiting: the Deployment has reported no ready replica, so the
	// registration must not be there yet, or a failing install would
	// refuse every Pod of the cluster.
	assertNotRegistered(t, cs, installed)
	// A Pod that predates the policy, for the audit to find: nothing judges
	// it now, the webhook not being registered.
	if err := ensureNamespace(ctx, cs, "team-a"); err != nil {
		t.Fatal(err)
	}
	oldPod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "predates-policy", Namespace: "team-a"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: deniedImage}}},
	}
	if _, err := cs.CoreV1().Pods("team-a").Create(ctx, oldPod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating a Pod before the webhook is registered: %v", err)
	}
	// The Deployment and kubelet's part: the replicas are ready.
	markDeploymentReady(t, cs, deploy)
	rel, err := installed.wait(t)
	if err != nil {
		t.Fatalf("helm install: %v", err)
	}
	t.Logf("helm install --wait: release %s revision %d %s (apply method %s) in %s", rel.Name, rel.Version, rel.Info.Status, rel.ApplyMethod, time.Since(start).Round(time.Millisecond))
	if rel.Info.Status != rcommon.StatusDeployed {
		t.Fatalf("release status %s, want deployed", rel.Info.Status)
	}
	vwc0, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, appName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the post-install hook did not register the webhook once the Deployment was ready: %v", err)
	}

	if !t.Run("the API server calls the webhook through the chart's registration", func(t *testing.T) {
		waitBundle(t, cs, ca.CertPEM())
		pointAtLoopback(t, cs, wh)
		awaitAdmissionConfig(t, cs)
		proveCalled(t, cs)
	}) {
		t.FailNow()
	}
	t.Run("one replica leads, on the chart's Lease", func(t *testing.T) {
		err := devenv.Poll(ctx, 30*time.Second, func(ctx context.Context) error {
			l, err := cs.CoordinationV1().Leases(installNamespace).Get(ctx, app.DefaultLeaderElectionID, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if h := ptr.Deref(l.Spec.HolderIdentity, ""); h != wh.replica {
				return fmt.Errorf("Lease %s held by %q, want %q", l.Name, h, wh.replica)
			}
			return nil
		})
		if err != nil {
			t.Errorf("leader election with the chart's RBAC: %v", err)
		}
	})
	t.Run("the audit reports the Pod that predates the policy", func(t *testing.T) {
		checkAuditReport(t, cfg, oldPod)
	})
	t.Run("the webhook exports every metric the alerts and the dashboard use, over HTTPS to the metrics reader only", func(t *testing.T) {
		checkExportedMetrics(t, cs, wh, ca)
	})

	// helm upgrade with new settings: the registration is replaced, with
	// the CA bundle carried over, and the calls go on.
	up := action.NewUpgrade(ac)
	up.Namespace = installNamespace
	up.WaitStrategy = kube.StatusWatcherStrategy // --wait
	up.Timeout = 2 * time.Minute
	start = time.Now()
	upgraded := runInBackground(func() (ri.Releaser, error) {
		return up.RunWithContext(ctx, releaseName, c, setValues(t, append(values, "image.tag=v1.1.0", "replicas=3", "webhook.timeoutSeconds=3", "audit.interval=30s")...))
	})
	// During the rollout the old registration stays, and keeps working.
	deploy = waitDeployment(t, cs, upgraded, deploy.Generation+1)
	if vwc, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, appName, metav1.GetOptions{}); err != nil || vwc.UID != vwc0.UID {
		t.Errorf("during the upgrade's rollout the registration is gone or replaced already (%v)", err)
	}
	markDeploymentReady(t, cs, deploy)
	rel, err = upgraded.wait(t)
	if err != nil {
		t.Fatalf("helm upgrade: %v", err)
	}
	t.Logf("helm upgrade --wait: revision %d %s in %s", rel.Version, rel.Info.Status, time.Since(start).Round(time.Millisecond))
	t.Run("the upgrade takes effect and the API server still calls the webhook", func(t *testing.T) {
		vwc, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, appName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if vwc.UID == vwc0.UID {
			t.Error("the registration was not replaced by the post-upgrade hook")
		}
		if !createdWithBundle(vwc) {
			t.Errorf("the replaced registration was created without the CA bundle (managedFields %s): until cainjector "+
				"injects it again, the API server could not call the webhook", managedFieldsSummary(vwc))
		}
		for _, hook := range vwc.Webhooks {
			if *hook.TimeoutSeconds != 3 {
				t.Errorf("%s: timeoutSeconds %d, want 3", hook.Name, *hook.TimeoutSeconds)
			}
		}
		d, err := cs.AppsV1().Deployments(installNamespace).Get(ctx, appName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if *d.Spec.Replicas != 3 || d.Spec.Template.Spec.Containers[0].Image != "registry.example.com/policy-webhook:v1.1.0" {
			t.Errorf("Deployment replicas %d image %s, want 3 and v1.1.0", *d.Spec.Replicas, d.Spec.Template.Spec.Containers[0].Image)
		}
		if f, err := parseServeArgs(d.Spec.Template.Spec.Containers[0].Args); err != nil || f.auditInterval != 30*time.Second {
			t.Errorf("Deployment args %q (%v), want --audit-interval=30s", d.Spec.Template.Spec.Containers[0].Args, err)
		}
		// The replaced registration names the Service again: repoint it.
		pointAtLoopback(t, cs, wh)
		awaitAdmissionConfig(t, cs)
		proveCalled(t, cs)
	})

	// helm uninstall: the registration goes first (pre-delete hook), then
	// the release's objects; the CRDs stay.
	un := action.NewUninstall(ac)
	// No --wait, as the README's `helm uninstall`: Helm waits for the
	// hooks only (Helm 4 names that default).
	un.WaitStrategy = kube.HookOnlyStrategy
	un.Timeout = 2 * time.Minute
	if _, err := un.Run(releaseName); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	// The Deployment is gone, and with it its Pods: stop the webhook, whose
	// RBAC went with the release.
	if err := wh.stop(); err != nil {
		t.Errorf("webhook: %v", err)
	}
	t.Run("uninstall removes the registration and keeps the CRDs, the report ones too", func(t *testing.T) {
		list, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range list.Items {
			if v.Name == appName {
				t.Errorf("ValidatingWebhookConfiguration %s is still there after helm uninstall (%d webhooks)", v.Name, len(v.Webhooks))
			}
		}
		if _, err := cs.AppsV1().Deployments(installNamespace).Get(ctx, appName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("the Deployment after helm uninstall: %v, want not found", err)
		}
		for _, crd := range []string{"admissionpolicies.policy.example.com", "reports.openreports.io", "policyreports.wgpolicyk8s.io"} {
			if _, err := dynamicGet(ctx, cfg, crdResource, "", crd); err != nil {
				t.Errorf("CRD %s after helm uninstall: %v, want kept", crd, err)
			}
		}
		// The API server no longer sends anything to the webhook: a policy
		// with a typo is admitted.
		awaitAdmissionConfig(t, cs)
		called, err := devenv.ProbeCalled(ctx, cs, installNamespace)
		if err != nil || called {
			t.Errorf("after helm uninstall the API server still calls the webhook (called %v, %v)", called, err)
		}
	})
}

// crdResource is the resource of CustomResourceDefinitions.
var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// background is a Helm action running in a goroutine.
type background struct {
	done chan struct{}
	rel  *release.Release
	err  error
}

func runInBackground(run func() (ri.Releaser, error)) *background {
	b := &background{done: make(chan struct{})}
	go func() {
		defer close(b.done)
		var r ri.Releaser
		r, b.err = run()
		if r == nil {
			return
		}
		rel, ok := r.(*release.Release)
		if !ok {
			b.err = errors.Join(b.err, fmt.Errorf("the Helm action returned a %T, want a %T", r, rel))
			return
		}
		b.rel = rel
	}()
	return b
}

// wait waits for the action to return.
func (b *background) wait(t *testing.T) (*release.Release, error) {
	t.Helper()
	select {
	case <-b.done:
		return b.rel, b.err
	case <-time.After(3 * time.Minute):
		t.Fatal("the Helm action did not return within 3 minutes")
		return nil, nil
	}
}

// waitDeployment waits until the Deployment exists at generation or later,
// failing the test if the action returns first.
func waitDeployment(t *testing.T, cs kubernetes.Interface, b *background, generation int64) *appsv1.Deployment {
	t.Helper()
	var d *appsv1.Deployment
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case <-b.done:
			return false, fmt.Errorf("the Helm action returned before the Deployment was ready: %w", b.err)
		default:
		}
		got, err := cs.AppsV1().Deployments(installNamespace).Get(ctx, appName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		d = got
		return got.Generation >= generation, nil
	})
	if err != nil {
		t.Fatalf("waiting for Deployment %s at generation %d: %v", appName, generation, err)
	}
	return d
}

// assertNotRegistered checks, while Helm still waits, that the webhook is
// not registered.
func assertNotRegistered(t *testing.T, cs kubernetes.Interface, b *background) {
	t.Helper()
	select {
	case <-b.done:
		t.Fatalf("helm install returned before the Deployment was ready: %v", b.err)
	default:
	}
	_, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(t.Context(), appName, metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("the webhook is registered (%v) before the Deployment has a ready replica", err)
	}
}

// markDeploymentReady does what the Deployment controller and the kubelets
// would once every replica of d's template is ready: a ReplicaSet of the
// template, owned by d, with every replica ready, and d's status observing
// its generation, with the conditions the controller sets then (Available;
// Progressing for the reason NewReplicaSetAvailable). Helm 4's --wait
// (kstatus) reads those conditions, where Helm 3's read the ReplicaSet.
func markDeploymentReady(t *testing.T, cs kubernetes.Interface, d *appsv1.Deployment) {
	t.Helper()
	ctx := t.Context()
	hash := strconv.FormatInt(d.Generation, 10)
	tmpl := *d.Spec.Template.DeepCopy()
	tmpl.Labels = maps.Clone(tmpl.Labels)
	tmpl.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
	sel := d.Spec.Selector.DeepCopy()
	sel.MatchLabels = maps.Clone(sel.MatchLabels)
	sel.MatchLabels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: d.Name + "-" + hash, Namespace: d.Namespace, Labels: tmpl.Labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(d, appsv1.SchemeGroupVersion.WithKind("Deployment"))},
		},
		Spec: appsv1.ReplicaSetSpec{Replicas: d.Spec.Replicas, Selector: sel, Template: tmpl},
	}
	rs, err := cs.AppsV1().ReplicaSets(d.Namespace).Create(ctx, rs, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating the ReplicaSet of Deployment %s: %v", d.Name, err)
	}
	n := *d.Spec.Replicas
	rs.Status = appsv1.ReplicaSetStatus{Replicas: n, ReadyReplicas: n, AvailableReplicas: n, FullyLabeledReplicas: n, ObservedGeneration: rs.Generation}
	if _, err := cs.AppsV1().ReplicaSets(d.Namespace).UpdateStatus(ctx, rs, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("marking ReplicaSet %s ready: %v", rs.Name, err)
	}
	d, err = cs.AppsV1().Deployments(d.Namespace).Get(ctx, d.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	d.Status = appsv1.DeploymentStatus{
		ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n,
		Conditions: []appsv1.DeploymentCondition{
			{
				Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable",
				Message: "Deployment has minimum availability.", LastUpdateTime: now, LastTransitionTime: now,
			},
			{
				Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "NewReplicaSetAvailable",
				Message: fmt.Sprintf("ReplicaSet %q has successfully progressed.", rs.Name), LastUpdateTime: now, LastTransitionTime: now,
			},
		},
	}
	if _, err := cs.AppsV1().Deployments(d.Namespace).UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("marking Deployment %s ready: %v", d.Name, err)
	}
}

// dynamicGet reads one object of any resource.
func dynamicGet(ctx context.Context, cfg *rest.Config, gvr schema.GroupVersionResource, namespace, name string) (map[string]any, error) {
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	o, err := dc.Resource(gvr).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return o.Object, nil
}

// getCertificate reads a cert-manager Certificate of the release.
// getCertificate waits for the chart's Certificate: Helm, still running in
// the background, creates custom resources after the Deployment the test
// has just seen.
func getCertificate(t *testing.T, cfg *rest.Config, name string) *cmapi.Certificate {
	t.Helper()
	var obj map[string]any
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		o, err := dynamicGet(ctx, cfg, cmapi.SchemeGroupVersion.WithResource("certificates"), installNamespace, name)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		obj = o
		return true, nil
	})
	if err != nil {
		t.Fatalf("Certificate %s: %v", name, err)
	}
	crt := new(cmapi.Certificate)
	data, err := json.Marshal(obj)
	if err == nil {
		err = json.Unmarshal(data, crt)
	}
	if err != nil {
		t.Fatalf("decoding Certificate %s: %v", name, err)
	}
	return crt
}

// servedWebhook is the webhook running in this process.
type servedWebhook struct {
	host        string
	port        int
	metricsAddr string
	// replica is the Pod name it runs as (POD_NAME).
	replica string
	// stop stops it (once) and reports how Run returned.
	stop func() error
}

// podName is the name the replica runs under, as a Pod of the Deployment
// would be named.
const podName = "policy-webhook-5d8f7c9b6-x2k4p"

// serveFlags are the flags of `policy-webhook serve` the Deployment's args
// may set, with serve's defaults; parsing the args refuses any other, so a
// flag the chart adds must be understood here too.
type serveFlags struct {
	policyNamespace string
	leaderElect     bool
	metricsSecure   bool
	failOpen        bool
	auditInterval   time.Duration
}

// parseServeArgs reads the container's args as `policy-webhook serve` does.
// The listening addresses and the certificate directory are read but not
// used: the webhook here listens on loopback ports of its own, and reads its
// certificate from a temporary directory.
func parseServeArgs(args []string) (serveFlags, error) {
	if len(args) == 0 || args[0] != "serve" {
		return serveFlags{}, fmt.Errorf("args %q do not start with serve", args)
	}
	var f serveFlags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&f.policyNamespace, "policy-namespace", webhook.DefaultPolicyNamespace, "")
	fs.BoolVar(&f.leaderElect, "leader-elect", true, "")
	fs.BoolVar(&f.metricsSecure, "metrics-secure", true, "")
	fs.BoolVar(&f.failOpen, "fail-open-before-sync", false, "")
	fs.DurationVar(&f.auditInterval, "audit-interval", reports.DefaultInterval, "")
	for _, ignored := range []string{"port", "cert-dir", "metrics-bind-address", "health-probe-bind-address"} {
		fs.String(ignored, "", "")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return serveFlags{}, fmt.Errorf("the Deployment's args %q: %w", args, err)
	}
	if fs.NArg() > 0 {
		return serveFlags{}, fmt.Errorf("the Deployment's args %q: unexpected %q", args, fs.Args())
	}
	return f, nil
}

// runWebhook runs app.Run as a replica of d would: impersonating its
// ServiceAccount, with the settings of its args, under the Pod name its
// POD_NAME would hold, serving issued as the kubelet mounts it, until the
// test ends or it is stopped. It waits until ready.
func runWebhook(t *testing.T, cfg *rest.Config, d *appsv1.Deployment, issued testenv.IssuedCertificate) *servedWebhook {
	t.Helper()
	certDir := filepath.Join(t.TempDir(), "serving-certs")
	if err := certs.WriteSecretVolume(certDir, issued.Data()); err != nil {
		t.Fatalf("mounting the Secret: %v", err)
	}
	saCfg := rest.CopyConfig(cfg)
	saCfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + d.Namespace + ":" + d.Spec.Template.Spec.ServiceAccountName,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + d.Namespace, "system:authenticated"},
	}
	ctr := d.Spec.Template.Spec.Containers[0]
	flags, err := parseServeArgs(ctr.Args)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(ctr.Env, func(e corev1.EnvVar) bool {
		return e.Name == "POD_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
	}) {
		t.Fatalf("the container's env %+v has no POD_NAME from metadata.name: every replica would take the same name", ctr.Env)
	}
	ports := make([]int, 2)
	for i := range ports {
		p, err := devenv.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
	}
	wh := &servedWebhook{host: "127.0.0.1", port: ports[0], metricsAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1])), replica: podName}

	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, app.Options{
			RestConfig:             saCfg,
			PolicyNamespace:        flags.policyNamespace,
			Host:                   wh.host,
			Port:                   wh.port,
			CertDir:                certDir,
			MetricsBindAddress:     wh.metricsAddr,
			MetricsSecure:          flags.metricsSecure,
			HealthProbeBindAddress: "0",
			FailOpenBeforeSync:     flags.failOpen,
			ReplicaName:            wh.replica,
			LeaderElection:         flags.leaderElect,
			AuditInterval:          flags.auditInterval,
			OnReady:                func() { close(ready) },
		})
	}()
	var once sync.Once
	var runErr error
	wh.stop = func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := wh.stop(); err != nil {
			t.Errorf("webhook: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		done <- err
		t.Fatalf("the webhook stopped before it was ready: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the webhook was not ready within 60s; with the chart's RBAC, an informer it may not list never syncs")
	}
	return wh
}

// assertServiceRefs checks that every webhook of the chart's registration
// calls the chart's Service: its name and namespace, port 443 (the Service's
// webhook port) and the path the webhook serves that kind of request on.
func assertServiceRefs(t *testing.T, cs kubernetes.Interface, vwc *admissionregistrationv1.ValidatingWebhookConfiguration) {
	t.Helper()
	svc, err := cs.CoreV1().Services(installNamespace).Get(t.Context(), appName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the chart's Service: %v", err)
	}
	if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == 443 }) {
		t.Errorf("Service %s has no port 443: %+v", appName, svc.Spec.Ports)
	}
	wantPaths := map[string]string{
		devenv.PodsWebhook:              "/validate-pods",
		devenv.PodControllersWebhook:    "/validate-podcontrollers",
		devenv.MyApplesWebhook:          "/validate-myapples",
		devenv.PolicyConfigMapsWebhook:  "/validate-policies",
		devenv.AdmissionPoliciesWebhook: "/validate-policies",
		devenv.PolicyExceptionsWebhook:  "/validate-policyexceptions",
		devenv.StateWebhook:             "/validate-state",
	}
	var names []string
	for _, h := range vwc.Webhooks {
		names = append(names, h.Name)
		ref := h.ClientConfig.Service
		switch {
		case ref == nil:
			t.Errorf("webhook %s: clientConfig has no service (url %v), want the chart's Service", h.Name, ptr.Deref(h.ClientConfig.URL, ""))
			continue
		case h.ClientConfig.URL != nil:
			t.Errorf("webhook %s: clientConfig has a url %q besides the service", h.Name, *h.ClientConfig.URL)
		}
		if ref.Name != svc.Name || ref.Namespace != svc.Namespace {
			t.Errorf("webhook %s: service %s/%s, want %s/%s", h.Name, ref.Namespace, ref.Name, svc.Namespace, svc.Name)
		}
		if p := ptr.Deref(ref.Port, 0); p != 443 {
			t.Errorf("webhook %s: service port %d, want 443", h.Name, p)
		}
		if want, ok := wantPaths[h.Name]; !ok {
			t.Errorf("unexpected webhook %s", h.Name)
		} else if got := ptr.Deref(ref.Path, ""); got != want {
			t.Errorf("webhook %s: service path %q, want %q", h.Name, got, want)
		}
	}
	if len(vwc.Webhooks) != len(wantPaths) {
		t.Errorf("the registration has webhooks %q, want the %d of %v", names, len(wantPaths), slices.Sorted(maps.Keys(wantPaths)))
	}
	if t.Failed() {
		t.FailNow()
	}
}

// pointAtLoopback checks that the chart's registration names the chart's
// Service (assertServiceRefs), then replaces every webhook's service
// reference by the URL https://127.0.0.1:<port><same path> of the webhook
// running in this process, keeping the CA bundle cainjector injected. The
// caller waits for the API server to take the change up
// (awaitAdmissionConfig).
func pointAtLoopback(t *testing.T, cs kubernetes.Interface, wh *servedWebhook) {
	t.Helper()
	ctx := t.Context()
	api := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	vwc, err := api.Get(ctx, appName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	assertServiceRefs(t, cs, vwc)
	base := "https://" + net.JoinHostPort(wh.host, strconv.Itoa(wh.port))
	// cainjector writes the same object; on a conflict, read it again.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := api.Get(ctx, appName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != vwc.UID {
			return fmt.Errorf("the registration was replaced (uid %s, checked %s)", cur.UID, vwc.UID)
		}
		for i := range cur.Webhooks {
			cc := &cur.Webhooks[i].ClientConfig
			if cc.Service == nil || cc.Service.Path == nil {
				return fmt.Errorf("webhook %s has no service path", cur.Webhooks[i].Name)
			}
			*cc = admissionregistrationv1.WebhookClientConfig{URL: ptr.To(base + *cc.Service.Path), CABundle: cc.CABundle}
		}
		_, err = api.Update(ctx, cur, metav1.UpdateOptions{FieldManager: "policy-webhook-chart-test"})
		return err
	})
	if err != nil {
		t.Fatalf("pointing the registration at %s: %v", base, err)
	}
}

// waitBundle waits until cainjector has injected want into every webhook of
// the registration.
func waitBundle(t *testing.T, cs kubernetes.Interface, want []byte) {
	t.Helper()
	start := time.Now()
	err := devenv.Poll(t.Context(), 30*time.Second, func(ctx context.Context) error {
		vwc, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, appName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, h := range vwc.Webhooks {
			if string(h.ClientConfig.CABundle) != string(want) {
				return fmt.Errorf("webhook %s has a caBundle of %d bytes", h.Name, len(h.ClientConfig.CABundle))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("cainjector did not inject the serving certificate's CA: %v", err)
	}
	t.Logf("cainjector injected the CA into every webhook within %s", time.Since(start).Round(time.Millisecond))
}

// awaitAdmissionConfig waits until the API server's admission chain has
// taken up every registration written so far.
func awaitAdmissionConfig(t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	if _, err := testenv.AwaitAdmissionConfig(t.Context(), cs, 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

// proveCalled shows the API server calling the webhook for each kind of
// request the registration routes: a policy with a typo refused by the
// policy endpoint, then, with a cluster-wide policy in force, a Pod denied
// with the message a user sees and one admitted.
func proveCalled(t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	ctx := t.Context()
	if err := devenv.WaitCalled(ctx, cs, installNamespace); err != nil {
		t.Fatalf("a policy with a typo: %v", err)
	}
	cm := devenv.PolicyConfigMap(installNamespace, "registries", testPolicy)
	// A candidate beside it, judged on the Pods below: the dashboard's
	// candidate panel has its metric to read.
	cm.Data["candidate.yaml"] = testPolicy
	if _, err := cs.CoreV1().ConfigMaps(installNamespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating the policy: %v", err)
	}
	if err := ensureNamespace(ctx, cs, "team-a"); err != nil {
		t.Fatal(err)
	}
	pod := func(name, image string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "team-a"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
		}
	}
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	want := []string{`admission webhook "pods.policy-webhook.policy.example.com" denied the request`,
		"ConfigMap " + installNamespace + "/registries", "spec.containers[0].image", deniedImage}
	err := devenv.Poll(ctx, 10*time.Second, func(ctx context.Context) error {
		_, err := cs.CoreV1().Pods("team-a").Create(ctx, pod("denied", deniedImage), dryRun)
		if err == nil {
			return errors.New("admitted")
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				return fmt.Errorf("refused without %q: %w", w, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("a Pod running %s was not denied by the policy: %v", deniedImage, err)
	}
	if _, err := cs.CoreV1().Pods("team-a").Create(ctx, pod("allowed", allowedImage), dryRun); err != nil {
		t.Errorf("a Pod running %s: %v, want admitted", allowedImage, err)
	}
}

// ensureNamespace creates a namespace unless it exists.
func ensureNamespace(ctx context.Context, cs kubernetes.Interface, name string) error {
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return nil
}

// createdWithBundle reports whether the registration's CA bundle was
// written by its creator, not later by cainjector.
func createdWithBundle(vwc *admissionregistrationv1.ValidatingWebhookConfiguration) bool {
	for _, mf := range vwc.ManagedFields {
		if strings.HasPrefix(mf.Manager, "cert-manager-cainjector") || mf.FieldsV1 == nil {
			continue
		}
		if strings.Contains(mf.FieldsV1.GetRawString(), `"f:caBundle"`) {
			return true
		}
	}
	return false
}

// managedFieldsSummary lists who wrote the object, for failure messages.
func managedFieldsSummary(o metav1.Object) string {
	var out []string
	for _, mf := range o.GetManagedFields() {
		out = append(out, fmt.Sprintf("%s %s", mf.Manager, mf.Operation))
	}
	return strings.Join(out, ", ")
}

// checkExportedMetrics scrapes the webhook's /metrics as the chart's
// ServiceMonitor would, and checks that every metric the alerts and the
// dashboard use from the webhook's process is there: over HTTPS, verifying
// the serving certificate against ca under the name the ServiceMonitor
// gives, with the token of the ServiceAccount metrics.serviceMonitor binds by
// default (bound here to the chart's metrics-reader ClusterRole as that
// option's binding does: the Prometheus Operator's CRDs are not installed).
// A scrape without a token is refused, which takes the metrics-auth RBAC.
//
// An invalid policy source is needed for policy_webhook_policy_errors to
// have a series: one in kube-system, which the registration leaves out, so it
// gets in unjudged, as the alert's runbook describes.
func checkExportedMetrics(t *testing.T, cs kubernetes.Interface, wh *servedWebhook, ca *certs.CA) {
	t.Helper()
	ctx := t.Context()
	bad := devenv.PolicyConfigMap(metav1.NamespaceSystem, "typo", "pods:\n  allowedRegistrie: [registry.example.com/]\n")
	if _, err := cs.CoreV1().ConfigMaps(metav1.NamespaceSystem).Create(ctx, bad, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating an invalid policy in kube-system: %v", err)
	}
	token := metricsReaderToken(t, cs)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca.CertPEM()) {
		t.Fatal("the CA's certificate does not parse")
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, ServerName: appName + "." + installNamespace + ".svc", MinVersion: tls.VersionTLS12,
	}}}
	url := "https://" + wh.metricsAddr + "/metrics"
	if _, err := scrape(ctx, hc, url, ""); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("a scrape without a token: %v, want 401 Unauthorized", err)
	}
	want := usedMetrics(t)
	// The binding takes a moment to reach the authorizer: poll.
	err := devenv.PollEvery(ctx, 100*time.Millisecond, 20*time.Second, func(ctx context.Context) error {
		families, err := scrape(ctx, hc, url, token)
		if err != nil {
			return fmt.Errorf("the metrics reader cannot scrape: %w", err)
		}
		var missing []string
		for _, name := range want {
			family := name
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(name, suffix); ok && families[base] != nil {
					family = base
				}
			}
			if families[family] == nil || len(families[family].Metric) == 0 {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("the webhook does not export %q, which the alerts or the dashboard use", missing)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// metricsReaderToken is a token of the ServiceAccount the chart's
// metrics.serviceMonitor binds to the metrics-reader ClusterRole by
// default, bound to it as that option does.
func metricsReaderToken(t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	ctx := t.Context()
	vals := loadChart(t).Values
	sa, _, err := unstructured.NestedStringMap(vals, "metrics", "serviceMonitor", "prometheusServiceAccount")
	if err != nil || sa["name"] == "" || sa["namespace"] == "" {
		t.Fatalf("values metrics.serviceMonitor.prometheusServiceAccount %v (%v)", sa, err)
	}
	if err := ensureNamespace(ctx, cs, sa["namespace"]); err != nil {
		t.Fatal(err)
	}
	_, err = cs.CoreV1().ServiceAccounts(sa["namespace"]).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa["name"]}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "policy-webhook-metrics-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "policy-webhook-metrics-reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa["name"], Namespace: sa["namespace"]}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(sa["namespace"]).CreateToken(ctx, sa["name"], &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("a token for %s/%s: %v", sa["namespace"], sa["name"], err)
	}
	return tr.Status.Token
}

// checkAuditReport waits for the audit, run by the elected replica with the
// chart's RBAC, to report pod in its namespace's OpenReports Report as
// failing the cluster-wide policy.
func checkAuditReport(t *testing.T, cfg *rest.Config, pod *corev1.Pod) {
	t.Helper()
	var last string
	err := devenv.Poll(t.Context(), 30*time.Second, func(ctx context.Context) error {
		obj, err := dynamicGet(ctx, cfg, reports.OpenReportsResource, pod.Namespace, reports.ReportName)
		if err != nil {
			return err
		}
		var r openreports.Report
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj, &r); err != nil {
			return devenv.Final(fmt.Errorf("decoding Report %s/%s: %w", pod.Namespace, reports.ReportName, err))
		}
		last = fmt.Sprintf("%+v", r.Results)
		for _, res := range r.Results {
			if res.Result == "fail" && slices.ContainsFunc(res.Subjects, func(o corev1.ObjectReference) bool {
				return o.Kind == "Pod" && o.Name == pod.Name
			}) {
				return nil
			}
		}
		return fmt.Errorf("no failing result for Pod %s", pod.Name)
	})
	if err != nil {
		t.Errorf("the audit did not report Pod %s/%s running %s: %v (results %s)", pod.Namespace, pod.Name, deniedImage, err, last)
	}
}

// usedMetrics are the names the alerts and the dashboard query that the
// webhook's own process exports (not up, kube-state-metrics' or
// cert-manager's).
func usedMetrics(t *testing.T) []string {
	t.Helper()
	var exprs []string
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	for _, p := range d.Panels {
		for _, q := range p.Targets {
			exprs = append(exprs, grafanaVars.Replace(q.Expr))
		}
	}
	var names []string
	for _, e := range exprs {
		expr, err := promParser.ParseExpr(e)
		if err != nil {
			t.Fatal(err)
		}
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok && !slices.Contains(names, vs.Name) &&
				(strings.HasPrefix(vs.Name, "policy_webhook_") || strings.HasPrefix(vs.Name, "process_") || strings.HasPrefix(vs.Name, "go_")) {
				names = append(names, vs.Name)
			}
			return nil
		})
	}
	slices.Sort(names)
	return names
}

// scrape reads a Prometheus text exposition with client hc, sending token
// as a bearer token if not empty.
func scrape(ctx context.Context, hc *http.Client, url, token string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}
