package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// backdate is how far before "now" certificates start to be valid, so a
// verifier whose clock is slightly behind the issuer's still accepts them.
const backdate = time.Minute

// CA is an in-memory self-signed certificate authority, safe for concurrent use.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
}

// NewCA makes a self-signed ECDSA P-256 CA named commonName, valid from now
// for validity. It can only sign leaf certificates (path length 0).
func NewCA(commonName string, validity time.Duration) (*CA, error) {
	if commonName == "" {
		return nil, errors.New("creating CA: common name is empty")
	}
	if validity <= 0 {
		return nil, fmt.Errorf("creating CA %q: validity %s is not positive", commonName, validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("creating CA %q: generating key: %w", commonName, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("creating CA %q: %w", commonName, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("creating CA %q: signing: %w", commonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("creating CA %q: parsing the signed certificate: %w", commonName, err)
	}
	return &CA{cert: cert, certPEM: encodeCert(der), key: key}, nil
}

// CertPEM returns the CA certificate in PEM, for a caBundle or RootCAs.
func (ca *CA) CertPEM() []byte {
	return append([]byte(nil), ca.certPEM...)
}

// Issue signs a serving certificate for dnsNames and ips (at least one) with
// a new ECDSA P-256 key, valid from now for validity, within the CA's life. It
// returns the certificate and the key (SEC 1, as cert-manager writes it) in PEM.
func (ca *CA) Issue(dnsNames []string, ips []net.IP, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if len(dnsNames) == 0 && len(ips) == 0 {
		return nil, nil, errors.New("issuing serving certificate: no DNS names or IP addresses")
	}
	// The CN: verifiers only look at the SANs, but people and logs read it.
	var subject string
	if len(dnsNames) > 0 {
		subject = dnsNames[0]
	} else {
		subject = ips[0].String()
	}
	if validity <= 0 {
		return nil, nil, fmt.Errorf("issuing serving certificate for %s: validity %s is not positive", subject, validity)
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.cert.NotAfter) {
		return nil, nil, fmt.Errorf("issuing serving certificate for %s: it would expire at %s, after its CA (%s)",
			subject, notAfter.UTC().Format(time.RFC3339), ca.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return ca.sign("serving certificate", &x509.Certificate{
		Subject:     pkix.Name{CommonName: subject},
		DNSNames:    append([]string(nil), dnsNames...),
		IPAddresses: append([]net.IP(nil), ips...),
		NotBefore:   now.Add(-backdate),
		NotAfter:    notAfter,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
}

// IssueClient issues a client certificate for commonName (the user a server
// trusting the CA sees), as Issue does a serving certificate.
func (ca *CA) IssueClient(commonName string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if commonName == "" {
		return nil, nil, errors.New("issuing client certificate: no common name")
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if validity <= 0 || notAfter.After(ca.cert.NotAfter) {
		return nil, nil, fmt.Errorf("issuing client certificate for %s: validity %s is not positive or outlives its CA (%s)",
			commonName, validity, ca.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return ca.sign("client certificate", &x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName},
		NotBefore:   now.Add(-backdate),
		NotAfter:    notAfter,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

// sign completes tmpl as an ECDSA leaf with a new key and signs it.
func (ca *CA) sign(what string, tmpl *x509.Certificate) (certPEM, keyPEM []byte, err error) {
	subject := tmpl.Subject.CommonName
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("issuing %s for %s: generating key: %w", what, subject, err)
	}
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return nil, nil, fmt.Errorf("issuing %s for %s: %w", what, subject, err)
	}
	// ECDSA keys only sign; KeyEncipherment is for RSA key exchange.
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("issuing %s for %s: signing: %w", what, subject, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("issuing %s for %s: encoding key: %w", what, subject, err)
	}
	return encodeCert(der), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

// newSerial returns a random positive 128-bit serial number, so no two
// certificates of a CA share one.
func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generating serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
