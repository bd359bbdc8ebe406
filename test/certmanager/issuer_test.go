package certmanager

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"maps"
	"net"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	cmutil "github.com/cert-manager/cert-manager/pkg/util"
	"github.com/cert-manager/cert-manager/pkg/util/pki"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	applycorev1 "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/policy-webhook/policy-webhook/certs"
)

// issuingFieldManager is the field manager cert-manager's issuing
// controller applies Certificate Secrets with.
const issuingFieldManager = "cert-manager-certificates-issuing"

// issued is a serving certificate as a Secret holds it.
type issued struct {
	certPEM, keyPEM, caPEM []byte
	leaf                   *x509.Certificate
}

// data is the Secret's data, which the kubelet projects as files.
func (i issued) data() map[string][]byte {
	return map[string][]byte{
		corev1.TLSCertKey:       i.certPEM,
		corev1.TLSPrivateKeyKey: i.keyPEM,
		cmmeta.TLSCAKey:         i.caPEM,
	}
}

// issue does what cert-manager's CA issuer does for crt: a new key (the
// serving Certificate's rotationPolicy is Always), a certificate for the
// Certificate's DNS names and IP addresses valid for its duration, signed by
// ca, and ca's certificate as ca.crt.
func issue(ca *certs.CA, crt *cmapi.Certificate) (issued, error) {
	var ips []net.IP
	for _, s := range crt.Spec.IPAddresses {
		ip := net.ParseIP(s)
		if ip == nil {
			return issued{}, fmt.Errorf("certificate %s: ipAddresses: %q is not an IP address", crt.Name, s)
		}
		ips = append(ips, ip)
	}
	validity := 90 * 24 * time.Hour // cert-manager's default duration
	if crt.Spec.Duration != nil {
		validity = crt.Spec.Duration.Duration
	}
	certPEM, keyPEM, err := ca.Issue(crt.Spec.DNSNames, ips, validity)
	if err != nil {
		return issued{}, fmt.Errorf("issuing certificate %s: %w", crt.Name, err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return issued{}, fmt.Errorf("certificate %s: the issued certificate is not PEM", crt.Name)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return issued{}, fmt.Errorf("certificate %s: reading the issued certificate: %w", crt.Name, err)
	}
	return issued{certPEM: certPEM, keyPEM: keyPEM, caPEM: ca.CertPEM(), leaf: leaf}, nil
}

// applySecret writes crt's Secret the way cert-manager's issuing controller
// leaves it (SecretsManager.UpdateData in cert-manager v1.21): type
// kubernetes.io/tls; tls.crt, tls.key and ca.crt; the secretTemplate's
// labels and annotations; the annotations naming the Certificate, its issuer
// and the certificate's subject and SANs; the label that marks Secrets
// cert-manager watches; applied server-side, with force, under cert-manager's
// field manager. cainjector only injects from a Secret whose
// cert-manager.io/certificate-name annotation names the Certificate.
func applySecret(ctx context.Context, cs kubernetes.Interface, crt *cmapi.Certificate, cert issued) error {
	annotations := map[string]string{
		cmapi.CertificateNameKey:       crt.Name,
		cmapi.IssuerNameAnnotationKey:  crt.Spec.IssuerRef.Name,
		cmapi.IssuerKindAnnotationKey:  crt.Spec.IssuerRef.Kind,
		cmapi.IssuerGroupAnnotationKey: crt.Spec.IssuerRef.Group,
		cmapi.CommonNameAnnotationKey:  cert.leaf.Subject.CommonName,
	}
	for key, values := range map[string][]string{
		cmapi.AltNamesAnnotationKey: cert.leaf.DNSNames,
		cmapi.IPSANAnnotationKey:    pki.IPAddressesToString(cert.leaf.IPAddresses),
		cmapi.URISANAnnotationKey:   pki.URLsToString(cert.leaf.URIs),
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
		WithData(cert.data())
	_, err := cs.CoreV1().Secrets(crt.Namespace).Apply(ctx, secret, metav1.ApplyOptions{FieldManager: issuingFieldManager, Force: true})
	if err != nil {
		return fmt.Errorf("applying Secret %s/%s of Certificate %s: %w", crt.Namespace, crt.Spec.SecretName, crt.Name, err)
	}
	return nil
}
