package pki

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

const (
	pemCert   = "CERTIFICATE"
	pemECKey  = "EC PRIVATE KEY"
	pemPKCS8  = "PRIVATE KEY"
	pemCSR    = "CERTIFICATE REQUEST"
	pemNewCSR = "NEW CERTIFICATE REQUEST" // written by some older tools
)

// EncodeCertPEM wraps a DER certificate in a "CERTIFICATE" PEM block.
func EncodeCertPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCert, Bytes: der})
}

// EncodeKeyPEM wraps a SEC 1 DER key (as returned by NewKey) in an
// "EC PRIVATE KEY" PEM block.
func EncodeKeyPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemECKey, Bytes: der})
}

// EncodeCSRPEM wraps a DER certificate request in a PEM block.
func EncodeCSRPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCSR, Bytes: der})
}

// ParseCertPEM parses the first PEM block of data, which must be a certificate.
func ParseCertPEM(data []byte) (*x509.Certificate, error) {
	block, err := decodePEM(data, pemCert)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: parse certificate: %w", err)
	}
	return cert, nil
}

// ParseKeyPEM parses an "EC PRIVATE KEY" or "PRIVATE KEY" (PKCS #8) block and
// returns the signer and its DER.
func ParseKeyPEM(data []byte) (crypto.Signer, []byte, error) {
	block, err := decodePEM(data, pemECKey, pemPKCS8)
	if err != nil {
		return nil, nil, err
	}
	key, err := parseKeyDER(block.Bytes)
	if err != nil {
		return nil, nil, err
	}
	return key, block.Bytes, nil
}

// ParseCSR parses a certificate request given as PEM ("CERTIFICATE REQUEST")
// or raw DER.
func ParseCSR(body []byte) (*x509.CertificateRequest, error) {
	if len(body) == 0 {
		return nil, fmt.Errorf("%w: body is empty", ErrCSRInvalid)
	}
	der := body
	if block, _ := pem.Decode(body); block != nil {
		if block.Type != pemCSR && block.Type != pemNewCSR {
			return nil, fmt.Errorf("%w: PEM block is %q, want %q", ErrCSRInvalid, block.Type, pemCSR)
		}
		der = block.Bytes
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: not a PEM or DER certificate request: %v", ErrCSRInvalid, err)
	}
	return csr, nil
}

func decodePEM(data []byte, types ...string) (*pem.Block, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("pki: no PEM block found (want %s)", strings.Join(types, " or "))
	}
	for _, t := range types {
		if block.Type == t {
			return block, nil
		}
	}
	return nil, fmt.Errorf("pki: PEM block is %q, want %s", block.Type, strings.Join(types, " or "))
}

func parseKeyDER(der []byte) (crypto.Signer, error) {
	if key, err := x509.ParseECPrivateKey(der); err == nil {
		return key, nil
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, errors.New("pki: private key is neither SEC 1 (EC PRIVATE KEY) nor PKCS #8 DER")
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pki: PKCS #8 key of type %T cannot sign", key)
	}
	return signer, nil
}
