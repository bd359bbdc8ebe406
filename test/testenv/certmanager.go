package testenv

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	cmscheme "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/scheme"
	"github.com/cert-manager/cert-manager/pkg/controller/cainjector"
	cmutil "github.com/cert-manager/cert-manager/pkg/util"
	"github.com/cert-manager/cert-manager/pkg/util/pki"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	applycorev1 "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
	kscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/policy-webhook/policy-webhook/certs"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
)

// StartCAInjector runs cert-manager's cainjector controllers
// (pkg/controller/cainjector, the code of the cert-manager-cainjector
// binary) against the API server of cfg until stop is called or ctx ends,
// and returns once their caches have synced. The manager is set up as that
// binary's does it (cmd/cainjector/app in cert-manager v1.21): the same
// scheme, Secrets read live instead of cached, the Certificate data source
// on and every injectable kind enabled. It leaves out only what a test has
// no use for: leader election, metrics and profiling servers. stop returns
// the manager's error.
func StartCAInjector(ctx context.Context, cfg *rest.Config) (stop func() error, err error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		kscheme.AddToScheme, cmscheme.AddToScheme, apiextensionsv1.AddToScheme, apiregistrationv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			return nil, fmt.Errorf("building cainjector's scheme: %w", err)
		}
	}
	injectorCfg := rest.CopyConfig(cfg)
	injectorCfg.UserAgent = "cert-manager-cainjector"
	mgr, err := ctrl.NewManager(injectorCfg, ctrl.Options{
		Scheme: scheme,
		Cache:  cache.Options{ReaderFailOnMissingInformer: true},
		Client: client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
		// Off: a test has no use for them and they would need ports.
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		LeaderElection:         false,
		// controller-runtime refuses a second controller of the same name
		// in a process; `go test -count=2` starts cainjector twice.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return nil, fmt.Errorf("creating cainjector's manager: %w", err)
	}
	err = cainjector.RegisterAllInjectors(ctx, mgr, cainjector.SetupOptions{
		EnableCertificatesDataSource: true,
		EnabledReconcilersFor: map[string]bool{
			cainjector.MutatingWebhookConfigurationName:   true,
			cainjector.ValidatingWebhookConfigurationName: true,
			cainjector.APIServiceName:                     true,
			cainjector.CustomResourceDefinitionName:       true,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("registering cainjector's controllers: %w", err)
	}

	mgrCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mgrCtx) }()
	stop = func() error {
		cancel()
		if err := <-done; err != nil {
			return fmt.Errorf("cainjector: %w", err)
		}
		return nil
	}
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		return nil, errors.Join(errors.New("cainjector's caches did not sync"), stop())
	}
	return stop, nil
}

// AwaitAdmissionConfig waits until the API server's admission chain uses
// every webhook configuration written so far, not only its storage, and
// returns how long that took.
//
// The API server judges requests from an informer's copy of the webhook
// configurations, so a caBundle that a Get already returns may not yet be
// the one it trusts. That lag is short but unbounded on a loaded machine;
// waiting it out with a sleep makes tests flaky. The barrier: a
// configuration of its own whose one webhook, failing closed at an address
// nothing listens on, matches only ConfigMaps carrying its label. The
// informer delivers events in order, so once a dry-run create of such a
// ConfigMap is refused by that webhook, every earlier write, the caBundle
// included, is in force too.
func AwaitAdmissionConfig(ctx context.Context, cs kubernetes.Interface, timeout time.Duration) (took time.Duration, err error) {
	start := time.Now()
	name := fmt.Sprintf("barrier-%d", start.UnixNano())
	const label = "policy-webhook.test/barrier"
	hook := name + ".policy-webhook.test"
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name: hook,
			ClientConfig: admissionregistrationv1.WebhookClientConfig{
				URL: ptr.To("https://127.0.0.1:1/barrier"),
			},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"},
				},
			}},
			ObjectSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{label: name}},
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To[int32](1),
		}},
	}
	api := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	if _, err := api.Create(ctx, vwc, metav1.CreateOptions{}); err != nil {
		return 0, fmt.Errorf("creating the admission barrier %s: %w", name, err)
	}
	defer func() {
		if derr := api.Delete(context.WithoutCancel(ctx), name, metav1.DeleteOptions{}); derr != nil {
			err = errors.Join(err, fmt.Errorf("deleting the admission barrier %s: %w", name, derr))
		}
	}()

	probe := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Name: name, Namespace: metav1.NamespaceDefault, Labels: map[string]string{label: name},
	}}
	err = devenv.Poll(ctx, timeout, func(ctx context.Context) error {
		_, err := cs.CoreV1().ConfigMaps(probe.Namespace).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		switch {
		case err == nil:
			return fmt.Errorf("a ConfigMap labelled %s=%s was admitted: the barrier is not in force yet", label, name)
		case !strings.Contains(err.Error(), hook):
			return fmt.Errorf("a ConfigMap labelled %s=%s was refused, but not by the barrier: %w", label, name, err)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("waiting for the API server's admission chain to take up the webhook configurations: %w", err)
	}
	return time.Since(start), nil
}

// IssuedCertificate is a certificate as cert-manager's Secret holds it.
type IssuedCertificate struct {
	CertPEM, KeyPEM, CAPEM []byte
	Leaf                   *x509.Certificate
}

// Data is the Secret's data, which the kubelet projects as files.
func (i IssuedCertificate) Data() map[string][]byte {
	return map[string][]byte{
		corev1.TLSCertKey:       i.CertPEM,
		corev1.TLSPrivateKeyKey: i.KeyPEM,
		cmmeta.TLSCAKey:         i.CAPEM,
	}
}

// IssueCertificate does what cert-manager's CA issuer does for crt: a new
// key (rotationPolicy Always), a certificate for the Certificate's DNS names
// and IP addresses valid for its duration, signed by ca, and ca's
// certificate as ca.crt.
func IssueCertificate(ca *certs.CA, crt *cmapi.Certificate) (IssuedCertificate, error) {
	var ips []net.IP
	for _, s := range crt.Spec.IPAddresses {
		ip := net.ParseIP(s)
		if ip == nil {
			return IssuedCertificate{}, fmt.Errorf("certificate %s: ipAddresses: %q is not an IP address", crt.Name, s)
		}
		ips = append(ips, ip)
	}
	validity := 90 * 24 * time.Hour // cert-manager's default duration
	if crt.Spec.Duration != nil {
		validity = crt.Spec.Duration.Duration
	}
	certPEM, keyPEM, err := ca.Issue(crt.Spec.DNSNames, ips, validity)
	if err != nil {
		return IssuedCertificate{}, fmt.Errorf("issuing certificate %s: %w", crt.Name, err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return IssuedCertificate{}, fmt.Errorf("certificate %s: the issued certificate is not PEM", crt.Name)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return IssuedCertificate{}, fmt.Errorf("certificate %s: reading the issued certificate: %w", crt.Name, err)
	}
	return IssuedCertificate{CertPEM: certPEM, KeyPEM: keyPEM, CAPEM: ca.CertPEM(), Leaf: leaf}, nil
}

// issuingFieldManager is the field manager cert-manager's issuing
// controller applies Certificate Secrets with.
const issuingFieldManager = "cert-manager-certificates-issuing"

// ApplyCertificateSecret writes crt's Secret the way cert-manager's issuing
// controller leaves it (SecretsManager.UpdateData in cert-manager v1.21):
// type kubernetes.io/tls; tls.crt, tls.key and ca.crt; the secretTemplate's
// labels and annotations; the annotations naming the Certificate, its issuer
// and the certificate's subject and SANs; the label that marks Secrets
// cert-manager watches; applied server-side, with force, under
// cert-manager's field manager. cainjector only injects from a Secret whose
// cert-manager.io/certificate-name annotation names the Certificate.
func ApplyCertificateSecret(ctx context.Context, cs kubernetes.Interface, crt *cmapi.Certificate, cert IssuedCertificate) error {
	annotations := map[string]string{
		cmapi.CertificateNameKey:       crt.Name,
		cmapi.IssuerNameAnnotationKey:  crt.Spec.IssuerRef.Name,
		cmapi.IssuerKindAnnotationKey:  crt.Spec.IssuerRef.Kind,
		cmapi.IssuerGroupAnnotationKey: crt.Spec.IssuerRef.Group,
		cmapi.CommonNameAnnotationKey:  cert.Leaf.Subject.CommonName,
	}
	for key, values := range map[string][]string{
		cmapi.AltNamesAnnotationKey: cert.Leaf.DNSNames,
		cmapi.IPSANAnnotationKey:    pki.IPAddressesToString(cert.Leaf.IPAddresses),
		cmapi.URISANAnnotationKey:   pki.URLsToString(cert.Leaf.URIs),
	} {
		csv, err := cmutil.JoinWithEscapeCSV(values)
		if err != nil {
			return fmt.Errorf("encoding annotation %s: %w", key, err)
		}
		annotations[key] = csv
	}
	labels := map[string]string{cmapi.PartOfCertManagerControllerLabelKey: "true"}
	if tmpl := crt.Spec.SecretTemplate; tmpl != nil {
		maps.Copy(labels, tmpl.Labels)
		maps.Copy(annotations, tmpl.Annotations)
	}
	secret := applycorev1.Secret(crt.Spec.SecretName, crt.Namespace).
		WithType(corev1.SecretTypeTLS).
		WithLabels(labels).
		WithAnnotations(annotations).
		WithData(cert.Data())
	_, err := cs.CoreV1().Secrets(crt.Namespace).Apply(ctx, secret, metav1.ApplyOptions{FieldManager: issuingFieldManager, Force: true})
	if err != nil {
		return fmt.Errorf("applying Secret %s/%s of Certificate %s: %w", crt.Namespace, crt.Spec.SecretName, crt.Name, err)
	}
	return nil
}
