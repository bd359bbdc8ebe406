package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewCA(t *testing.T) {
	before := time.Now()
	ca, err := NewCA("policy-webhook test CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert := parseCertPEM(t, ca.CertPEM())
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.MaxPathLen != 0 || !cert.MaxPathLenZero {
		t.Errorf("CA constraints: IsCA=%v BasicConstraintsValid=%v MaxPathLen=%d MaxPathLenZero=%v",
			cert.IsCA, cert.BasicConstraintsValid, cert.MaxPathLen, cert.MaxPathLenZero)
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("KeyUsage %b lacks CertSign", cert.KeyUsage)
	}
	if cert.Subject.CommonName != "policy-webhook test CA" {
		t.Errorf("CommonName = %q", cert.Subject.CommonName)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}
	assertP256(t, cert)
	if cert.NotBefore.After(before) || cert.NotAfter.Before(before.Add(24*time.Hour-time.Second)) ||
		cert.NotAfter.After(time.Now().Add(24*time.Hour)) {
		t.Errorf("validity %s..%s does not cover now..now+24h", cert.NotBefore, cert.NotAfter)
	}
	// CertPEM hands out a copy: callers cannot corrupt the CA.
	ca.CertPEM()[0] = 'X'
	if ca.CertPEM()[0] != '-' {
		t.Error("CertPEM returned the CA's own buffer")
	}
}

func TestNewCARejects(t *testing.T) {
	for _, tc := range []struct {
		name, cn string
		validity time.Duration
		want     string
	}{
		{"empty name", "", time.Hour, "common name is empty"},
		{"zero validity", "ca", 0, "not positive"},
		{"negative validity", "ca", -time.Hour, "not positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewCA(tc.cn, tc.validity)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewCA(%q, %s) error = %v, want one containing %q", tc.cn, tc.validity, err, tc.want)
			}
		})
	}
}

func TestIssue(t *testing.T) {
	ca, err := NewCA("test CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM())
	other, err := NewCA("other CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherRoots := x509.NewCertPool()
	otherRoots.AppendCertsFromPEM(other.CertPEM())

	for _, tc := range []struct {
		name   string
		dns    []string
		ips    []net.IP
		wantCN string
	}{
		{"service names", []string{"policy-webhook.policy-system.svc", "policy-webhook.policy-system.svc.cluster.local"}, nil,
			"policy-webhook.policy-system.svc"},
		{"loopback IPs only", nil, []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}, "127.0.0.1"},
		{"names and IPs", []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, "localhost"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			certPEM, keyPEM, err := ca.Issue(tc.dns, tc.ips, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
				t.Fatalf("certificate and key do not match: %v", err)
			}
			if block, _ := pem.Decode(keyPEM); block == nil || block.Type != "EC PRIVATE KEY" {
				t.Errorf("key PEM block is not an EC PRIVATE KEY: %q", keyPEM)
			}
			cert := parseCertPEM(t, certPEM)
			assertP256(t, cert)
			if cert.IsCA {
				t.Error("serving certificate is a CA")
			}
			if cert.Subject.CommonName != tc.wantCN {
				t.Errorf("CommonName = %q, want %q", cert.Subject.CommonName, tc.wantCN)
			}
			if !slices.Equal(cert.DNSNames, tc.dns) {
				t.Errorf("DNSNames = %v, want %v", cert.DNSNames, tc.dns)
			}
			if !slices.EqualFunc(cert.IPAddresses, tc.ips, net.IP.Equal) {
				t.Errorf("IPAddresses = %v, want %v", cert.IPAddresses, tc.ips)
			}
			if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
				t.Errorf("ExtKeyUsage = %v, want [ServerAuth]", cert.ExtKeyUsage)
			}
			if cert.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("KeyUsage = %b, want DigitalSignature only", cert.KeyUsage)
			}
			if cert.NotAfter.After(time.Now().Add(time.Hour)) {
				t.Errorf("NotAfter %s is later than asked for", cert.NotAfter)
			}
			// Every SAN verifies as a server name against the CA, and nothing
			// else does, and the CA it was not issued by refuses it.
			for _, name := range append(slices.Clone(tc.dns), ipStrings(tc.ips)...) {
				opts := x509.VerifyOptions{Roots: roots, DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
				if _, err := cert.Verify(opts); err != nil {
					t.Errorf("verifying for %s: %v", name, err)
				}
			}
			wrongName := x509.VerifyOptions{Roots: roots, DNSName: "evil.example.com"}
			if _, err := cert.Verify(wrongName); err == nil {
				t.Error("certificate verifies for a name it was not issued for")
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: otherRoots}); err == nil {
				t.Error("certificate verifies against a CA that did not issue it")
			}
			clientAuth := x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
			if _, err := cert.Verify(clientAuth); err == nil {
				t.Error("serving certificate verifies for client authentication")
			}
		})
	}
}

func TestIssueGivesEachCertificateItsOwnSerialAndKey(t *testing.T) {
	ca, err := NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert1, key1, err := ca.Issue([]string{"localhost"}, nil, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	cert2, key2, err := ca.Issue([]string{"localhost"}, nil, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if parseCertPEM(t, cert1).SerialNumber.Cmp(parseCertPEM(t, cert2).SerialNumber) == 0 {
		t.Error("two certificates share a serial number")
	}
	if string(key1) == string(key2) {
		t.Error("two certificates share a key")
	}
}

func TestIssueRejects(t *testing.T) {
	ca, err := NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		dns      []string
		ips      []net.IP
		validity time.Duration
		want     string
	}{
		{"no SANs", nil, nil, time.Minute, "no DNS names or IP addresses"},
		{"zero validity", []string{"localhost"}, nil, 0, "not positive"},
		{"outlives its CA", []string{"localhost"}, nil, 2 * time.Hour, "after its CA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ca.Issue(tc.dns, tc.ips, tc.validity)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Issue error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func parseCertPEM(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, rest := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" || len(rest) != 0 {
		t.Fatalf("not a single PEM certificate: %q", certPEM)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func assertP256(t *testing.T, cert *x509.Certificate) {
	t.Helper()
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key is %T, want an ECDSA P-256 key", cert.PublicKey)
	}
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}
