package certmanager

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/policy-webhook/policy-webhook/certs"
	"github.com/policy-webhook/policy-webhook/cmd/policy-webhook/app"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/policy"
)

// installFieldManager owns what the proofs apply, as `make deploy`'s
// field manager does in a cluster.
const installFieldManager = "policy-webhook-deploy"

// windowAdmissions is how many admissions each step of a renewal must
// carry. Between the Secret update and the volume update (the kubelet's
// sync period plus its cache TTL, a minute or more in a cluster), the API
// server already sees the new Secret's effects (a new caBundle) and the
// webhook still serves the files it has; the proofs hold that window open
// until this many admissions have gone through it, rather than for a time.
const windowAdmissions = 20

// testPolicy is the cluster-wide policy of the proofs: a policy ConfigMap
// in the webhook's own namespace.
const (
	testPolicyName = "registries"
	testPolicyYAML = `match:
  kinds: [Pod]
pods:
  allowedRegistries: [registry.example.com/]
`
	workloadNamespace = "team-a"
)

// TestInstallOnControlPlane proves, on one local control plane with
// cert-manager's CRDs, that the install works with cert-manager: every
// rendered object is accepted; cert-manager's cainjector fills the
// webhook's caBundle from the serving Certificate's Secret and the API
// server then calls the webhook over TLS; renewing the certificate, with
// the same CA or a new one, loses no admission.
func TestInstallOnControlPlane(t *testing.T) {
	adminCfg := startControlPlane(t)
	ctx := t.Context()
	objs := render(t, "default")

	warn := &warnings{}
	cfg := rest.CopyConfig(adminCfg)
	cfg.WarningHandlerWithContext = warn
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatalf("creating a client: %v", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("creating a clientset: %v", err)
	}

	if !t.Run("every rendered object passes server-side apply", func(t *testing.T) {
		proveDryRun(t, c, objs, warn)
	}) {
		t.FailNow()
	}

	// Install for real, as `make deploy` does before it registers the
	// webhook: everything but the ValidatingWebhookConfiguration. The
	// Deployment's Pods never run (no scheduler, no kubelet): the webhook runs
	// in this process instead, as the Deployment's ServiceAccount.
	//
	// The API server will reach the webhook at 127.0.0.1 (a URL, as there is
	// no Service to route to), so the serving Certificate must name that
	// address too.
	servingObj := find(t, objs, "Certificate", servingCertName)
	if err := unstructured.SetNestedStringSlice(servingObj.Object, []string{"127.0.0.1"}, "spec", "ipAddresses"); err != nil {
		t.Fatal(err)
	}
	servingCert := typed[cmapi.Certificate](t, servingObj)
	for _, o := range objs {
		if o.GetKind() == "ValidatingWebhookConfiguration" {
			continue
		}
		if err := apply(ctx, c, o.DeepCopy()); err != nil {
			t.Fatal(err)
		}
	}
	if w := warn.take(); len(w) > 0 {
		t.Errorf("warnings while installing: %q", w)
	}
	// Nothing is registered yet: deploy.sh's check that the API server
	// calls the webhook must fail, saying so.
	if out, err := deployVerify(t, adminCfg, "2s"); err == nil || !strings.Contains(stderrOf(err), "does not call the webhook") {
		t.Errorf("hack/deploy.sh verify before registration: %v %s%s; want a failure", err, out, stderrOf(err))
	}

	startCAInjector(ctx, t, adminCfg)

	// cert-manager's part, done here: the CA Issuer signs the serving
	// Certificate and the issuing controller writes its Secret.
	caCert := typed[cmapi.Certificate](t, find(t, objs, "Certificate", "policy-webhook-ca"))
	ca, err := certs.NewCA(caCert.Spec.CommonName, caCert.Spec.Duration.Duration)
	if err != nil {
		t.Fatalf("making the CA: %v", err)
	}
	first, err := issue(ca, servingCert)
	if err != nil {
		t.Fatal(err)
	}
	if err := applySecret(ctx, cs, servingCert, first); err != nil {
		t.Fatal(err)
	}

	// The kubelet's part: the Secret, as files, where --cert-dir points.
	certDir := filepath.Join(t.TempDir(), "serving-certs")
	if err := certs.WriteSecretVolume(certDir, first.Data()); err != nil {
		t.Fatalf("mounting the Secret: %v", err)
	}
	deploy := typed[appsv1.Deployment](t, find(t, objs, "Deployment", appName))
	port, err := devenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	startWebhook(t, serviceAccountConfig(adminCfg, deploy), certDir, port)

	vwc := pointAtURL(t, find(t, objs, "ValidatingWebhookConfiguration", appName), "https://"+net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err := apply(ctx, c, vwc); err != nil {
		t.Fatal(err)
	}

	if !t.Run("cainjector injects the serving certificate's CA", func(t *testing.T) {
		waitBundle(t, cs, first.CAPEM, "the CA of Secret "+servingCert.Spec.SecretName)
		awaitAdmissionConfig(t, cs, "the injected caBundle")
	}) {
		t.FailNow()
	}

	wantDenial := denial("ConfigMap " + installNamespace + "/" + testPolicyName)
	if !t.Run("the API server calls the webhook", func(t *testing.T) {
		proveAdmissions(t, cs, c, wantDenial)
		out, err := deployVerify(t, adminCfg, "30s")
		if err != nil || !strings.Contains(string(out), "the API server calls the webhook") {
			t.Errorf("hack/deploy.sh verify: %v\n%s%s", err, out, stderrOf(err))
		}
	}) {
		t.FailNow()
	}

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	loop := startAdmissions(ctx, cs, workloadNamespace, wantDenial)
	t.Cleanup(loop.stop)
	t.Run("renewal by the same CA loses no admission", func(t *testing.T) {
		renewSameCA(t, cs, loop, servingCert, ca, certDir, addr)
	})
	t.Run("renewal by a new CA loses no admission", func(t *testing.T) {
		renewNewCA(t, cs, loop, servingCert, ca, caCert.Spec.Duration.Duration, certDir, addr)
	})
	loop.stop()
	if f := loop.failed(); len(f) > 0 {
		t.Errorf("%d of %d admissions failed during the renewals; the first:\n%s",
			len(f), loop.total()+int64(len(f)), strings.Join(f[:min(len(f), 10)], "\n"))
	} else {
		t.Logf("%d admissions through the API server during the renewals (%d allowed, %d denied), none failed",
			loop.total(), loop.allowed.Load(), loop.denied.Load())
	}
}

// proveDryRun creates the Namespace, then applies every rendered object
// server-side as a dry run: the API server validates each against its
// schema (cert-manager's CRDs for Issuers and Certificates), runs
// admission (Pod Security of the restricted namespace on the Deployment's
// Pod template, the priority class) and would store it.
func proveDryRun(t *testing.T, c client.Client, objs []*unstructured.Unstructured, warn *warnings) {
	ctx := t.Context()
	ns := find(t, objs, "Namespace", installNamespace)
	if err := apply(ctx, c, ns.DeepCopy()); err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		obj := o.DeepCopy()
		err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj),
			client.FieldOwner(installFieldManager), client.ForceOwnership, client.DryRunAll)
		if err != nil {
			t.Errorf("%s: %v", key(o), err)
			continue
		}
		// The answer is the object as it would be stored.
		if obj.GetUID() == "" && obj.GetKind() != "Namespace" && obj.GetResourceVersion() == "" {
			t.Errorf("%s: the dry run answered %v, not a stored object", key(o), obj.Object)
		}
		if w := warn.take(); len(w) > 0 {
			t.Errorf("%s: warnings %q", key(o), w)
		}
	}
	t.Logf("server-side apply (dry run) accepted all %d objects", len(objs))
}

// apply applies obj server-side under the install's field manager.
func apply(ctx context.Context, c client.Client, obj *unstructured.Unstructured) error {
	err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner(installFieldManager), client.ForceOwnership)
	if err != nil {
		return fmt.Errorf("applying %s: %w", key(obj), err)
	}
	return nil
}

// serviceAccountConfig is cfg impersonating the Deployment's
// ServiceAccount, so the webhook runs with exactly the install's RBAC.
func serviceAccountConfig(cfg *rest.Config, d *appsv1.Deployment) *rest.Config {
	saCfg := rest.CopyConfig(cfg)
	saCfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + d.Namespace + ":" + d.Spec.Template.Spec.ServiceAccountName,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + d.Namespace, "system:authenticated"},
	}
	return saCfg
}

// startWebhook runs the webhook in process on 127.0.0.1:port with its
// certificate from certDir, until the test ends, and waits for it to be
// ready (informers synced, certificate loaded).
func startWebhook(t *testing.T, cfg *rest.Config, certDir string, port int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, app.Options{
			RestConfig:      cfg,
			PolicyNamespace: installNamespace,
			Host:            "127.0.0.1",
			Port:            port,
			CertDir:         certDir,
			// With the install's Lease RBAC, as the Deployment runs it.
			LeaderElection: true,
			ReplicaName:    "proof",
			OnReady:        func() { close(ready) },
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("webhook: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		done <- err
		t.Fatalf("the webhook stopped before it was ready: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the webhook was not ready within 60s; with the ServiceAccount's RBAC, an informer it may not list never syncs")
	}
}

// pointAtURL returns the rendered webhook configuration with every
// webhook's Service reference replaced by a URL on base with the same path.
// Everything else, the cert-manager annotation included, stays as rendered.
func pointAtURL(t *testing.T, vwc *unstructured.Unstructured, base string) *unstructured.Unstructured {
	t.Helper()
	out := vwc.DeepCopy()
	webhooks, _, err := unstructured.NestedSlice(out.Object, "webhooks")
	if err != nil || len(webhooks) == 0 {
		t.Fatalf("%s has no webhooks (%v)", key(vwc), err)
	}
	for i, w := range webhooks {
		wh := w.(map[string]any)
		path, _, _ := unstructured.NestedString(wh, "clientConfig", "service", "path")
		if path == "" {
			t.Fatalf("%s: webhook %v has no service path", key(vwc), wh["name"])
		}
		wh["clientConfig"] = map[string]any{"url": base + path}
		webhooks[i] = wh
	}
	if err := unstructured.SetNestedSlice(out.Object, webhooks, "webhooks"); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitBundle waits until every webhook of the configuration has exactly
// want as its caBundle.
func waitBundle(t *testing.T, cs kubernetes.Interface, want []byte, what string) {
	t.Helper()
	start := time.Now()
	err := devenv.Poll(t.Context(), 30*time.Second, func(context.Context) error {
		vwc, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(t.Context(), appName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, wh := range vwc.Webhooks {
			if !bytes.Equal(wh.ClientConfig.CABundle, want) {
				return fmt.Errorf("webhook %s has a caBundle of %d bytes, not %s (%d bytes)", wh.Name, len(wh.ClientConfig.CABundle), what, len(want))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("cainjector did not inject %s: %v", what, err)
	}
	t.Logf("cainjector injected %s into every webhook within %s", what, time.Since(start).Round(time.Millisecond))
}

// proveAdmissions shows the API server calling the webhook over TLS: a
// policy ConfigMap (judged by the policy endpoint on its way in), then a Pod
// it allows and one it denies, with the message a user sees; an invalid
// policy refused; an AdmissionPolicy whose status the webhook, with its
// RBAC, marks in force.
func proveAdmissions(t *testing.T, cs kubernetes.Interface, c client.Client, wantDenial []string) {
	ctx := t.Context()
	cm := devenv.PolicyConfigMap(installNamespace, testPolicyName, testPolicyYAML)
	if _, err := cs.CoreV1().ConfigMaps(installNamespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the policy ConfigMap: %v", err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: workloadNamespace}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", workloadNamespace, err)
	}

	// The policy is in force on the webhook once its informer has it.
	denied := testPod(workloadNamespace, "denied", deniedImage)
	if err := devenv.Poll(ctx, 10*time.Second, func(context.Context) error { return checkDenied(createPod(ctx, cs, denied, true), wantDenial) }); err != nil {
		t.Fatalf("the policy never came into force: %v", err)
	}
	err := createPod(ctx, cs, denied, false)
	if bad := checkDenied(err, wantDenial); bad != nil {
		t.Errorf("Pod with %s: %v", deniedImage, bad)
	} else {
		t.Logf("a Pod with %s: %s: %v", deniedImage, apierrors.ReasonForError(err), err)
	}
	if err := createPod(ctx, cs, testPod(workloadNamespace, "allowed", allowedImage), false); err != nil {
		t.Errorf("Pod with %s: %v, want admitted", allowedImage, err)
	}

	bad := cm.DeepCopy()
	bad.Name = "typo"
	bad.Data[policy.ConfigMapDataKey] = "pods:\n  allowedRegistry: [registry.example.com/]\n"
	_, err = cs.CoreV1().ConfigMaps(installNamespace).Create(ctx, bad, metav1.CreateOptions{})
	wantInvalid := []string{`admission webhook "configmaps.policy-webhook.policy.example.com" denied the request`, "allowedRegistry"}
	for _, w := range wantInvalid {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("invalid policy ConfigMap: %v, want refused with %q", err, w)
		}
	}

	ap := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "policy.example.com/v1alpha1",
		"kind":       "AdmissionPolicy",
		"metadata":   map[string]any{"name": "apple-colors"},
		"spec": map[string]any{
			"match":    map[string]any{"kinds": []any{"MyApple"}},
			"myApples": map[string]any{"allowedColors": []any{"red", "green"}},
		},
	}}
	if err := c.Create(ctx, ap); err != nil {
		t.Fatalf("creating AdmissionPolicy %s: %v", ap.GetName(), err)
	}
	err = devenv.Poll(ctx, 10*time.Second, func(context.Context) error {
		if err := c.Get(ctx, types.NamespacedName{Name: ap.GetName()}, ap); err != nil {
			return err
		}
		conds, _, _ := unstructured.NestedSlice(ap.Object, "status", "conditions")
		for _, cond := range conds {
			if m, _ := cond.(map[string]any); m["type"] == "Ready" && m["status"] == "True" {
				return nil
			}
		}
		return fmt.Errorf("status %v", ap.Object["status"])
	})
	if err != nil {
		t.Errorf("AdmissionPolicy %s was not marked Ready by the webhook: %v", ap.GetName(), err)
	}
}

// renewSameCA renews the serving certificate the way cert-manager does every
// duration - renewBefore: a new key and certificate from the same CA in
// the Secret (ca.crt rewritten, unchanged); the kubelet swaps the files in
// a while later. The caBundle stays valid throughout.
func renewSameCA(t *testing.T, cs kubernetes.Interface, loop *admissionLoop, crt *cmapi.Certificate, ca *certs.CA, certDir, addr string) {
	ctx := t.Context()
	next, err := issue(ca, crt)
	if err != nil {
		t.Fatal(err)
	}
	if err := applySecret(ctx, cs, crt, next); err != nil {
		t.Fatal(err)
	}
	loop.waitAdmissions(t, loop.total(), windowAdmissions, "between the Secret update and the volume update")
	if err := certs.WriteSecretVolume(certDir, next.Data()); err != nil {
		t.Fatalf("updating the mounted Secret: %v", err)
	}
	waitServed(t, addr, next)
	waitBundle(t, cs, ca.CertPEM(), "the same CA")
	loop.waitAdmissions(t, loop.total(), windowAdmissions, "after the new certificate was served")
	if f := loop.failed(); len(f) > 0 {
		t.Fatalf("%d admissions failed, the first: %q", len(f), f[:min(len(f), 5)])
	}
}

// renewNewCA renews the serving certificate from a new CA, as its next
// renewal does once the CA Certificate has been renewed (cert-manager does
// not reissue a leaf when its CA changes): a new key and certificate signed
// by the new CA, and the new CA as ca.crt. cainjector (its CAInjectorMerging
// feature, GA and on since cert-manager v1.21) adds the new CA to the
// caBundle and keeps the old one until it expires, so the API server trusts
// both the certificate the webhook still serves until the kubelet swaps the
// files and the new one after.
func renewNewCA(t *testing.T, cs kubernetes.Interface, loop *admissionLoop, crt *cmapi.Certificate, oldCA *certs.CA,
	caDuration time.Duration, certDir, addr string) {
	ctx := t.Context()
	newCA, err := certs.NewCA("policy-webhook-ca", caDuration)
	if err != nil {
		t.Fatalf("making the new CA: %v", err)
	}
	next, err := issue(newCA, crt)
	if err != nil {
		t.Fatal(err)
	}
	if err := applySecret(ctx, cs, crt, next); err != nil {
		t.Fatal(err)
	}
	both := append(append([]byte(nil), oldCA.CertPEM()...), newCA.CertPEM()...)
	waitBundle(t, cs, both, "the new CA next to the old one")
	awaitAdmissionConfig(t, cs, "the caBundle with both CAs")
	loop.waitAdmissions(t, loop.total(), windowAdmissions, "between the re-injection and the volume update")
	if err := certs.WriteSecretVolume(certDir, next.Data()); err != nil {
		t.Fatalf("updating the mounted Secret: %v", err)
	}
	waitServed(t, addr, next)
	loop.waitAdmissions(t, loop.total(), windowAdmissions, "after the certificate from the new CA was served")
	if f := loop.failed(); len(f) > 0 {
		t.Fatalf("%d admissions failed, the first: %q", len(f), f[:min(len(f), 5)])
	}
}

// waitServed waits until new connections to the webhook get cert.
func waitServed(t *testing.T, addr string, cert issued) {
	t.Helper()
	start := time.Now()
	err := devenv.Poll(t.Context(), 30*time.Second, func(context.Context) error {
		serial, err := servedSerial(t.Context(), addr)
		if err != nil {
			return err
		}
		if serial.Cmp(cert.Leaf.SerialNumber) != 0 {
			return fmt.Errorf("serving serial %x, want %x", serial, cert.Leaf.SerialNumber)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the webhook did not load the renewed certificate: %v", err)
	}
	t.Logf("the webhook served the renewed certificate %s after the volume update", time.Since(start).Round(time.Millisecond))
}
