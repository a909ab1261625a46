package pki

import (
	"crypto/x509"
	"encoding/pem"
	"slices"
	"testing"
)

func TestPEMRoundTrip(t *testing.T) {
	ca := newTestCA(t)
	cert, err := ParseCertPEM(EncodeCertPEM(ca.CertDER))
	if err != nil || !slices.Equal(cert.Raw, ca.CertDER) {
		t.Fatalf("ParseCertPEM round trip: %v", err)
	}
	key, der, err := ParseKeyPEM(EncodeKeyPEM(ca.KeyDER))
	if err != nil || !slices.Equal(der, ca.KeyDER) || !publicKeysEqual(ca.Key.Public(), key.Public()) {
		t.Fatalf("ParseKeyPEM round trip: %v", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ParseKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})); err != nil {
		t.Errorf("ParseKeyPEM(PKCS #8): %v", err)
	}

	_, err = ParseCertPEM([]byte("hello"))
	wantErr(t, err, "no PEM block found (want CERTIFICATE)")
	_, err = ParseCertPEM(EncodeKeyPEM(ca.KeyDER))
	wantErr(t, err, `PEM block is "EC PRIVATE KEY", want CERTIFICATE`)
	_, _, err = ParseKeyPEM(EncodeCertPEM(ca.CertDER))
	wantErr(t, err, `PEM block is "CERTIFICATE", want EC PRIVATE KEY or PRIVATE KEY`)
	_, _, err = ParseKeyPEM(EncodeKeyPEM([]byte("junk")))
	wantErr(t, err, "neither SEC 1")
}

func TestParseCSR(t *testing.T) {
	key, _, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := NewNodeCSR(key, "edge-1")
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string][]byte{"DER": der, "PEM": EncodeCSRPEM(der)} {
		csr, err := ParseCSR(body)
		if err != nil {
			t.Fatalf("ParseCSR(%s): %v", name, err)
		}
		if csr.Subject.CommonName != "system:node:edge-1" || !slices.Equal(csr.Subject.Organization, []string{"system:nodes"}) {
			t.Errorf("ParseCSR(%s) subject = %v", name, csr.Subject)
		}
	}
	for _, tc := range []struct {
		body []byte
		want string
	}{
		{nil, "body is empty"},
		{[]byte("garbage"), "not a PEM or DER certificate request"},
		{EncodeCertPEM([]byte{1}), `PEM block is "CERTIFICATE", want "CERTIFICATE REQUEST"`},
		{EncodeCSRPEM([]byte{1, 2}), "not a PEM or DER certificate request"},
	} {
		_, err := ParseCSR(tc.body)
		wantErr(t, err, tc.want)
	}
	_, err = NewNodeCSR(key, "Bad")
	wantErr(t, err, `node name "Bad"`)
}
