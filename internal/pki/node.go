package pki

import (
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
)

// NodeCommonName is the certificate common name of node: "system:node:"+node.
func NodeCommonName(node string) string { return nodeCNPrefix + node }

// NodeNameFromCert returns the node a node client certificate was issued to.
func NodeNameFromCert(cert *x509.Certificate) (string, error) {
	if cert == nil {
		return "", fmt.Errorf("pki: no certificate")
	}
	cn := cert.Subject.CommonName
	name, ok := strings.CutPrefix(cn, nodeCNPrefix)
	if !ok {
		return "", fmt.Errorf("pki: certificate common name %q does not start with %q", cn, nodeCNPrefix)
	}
	if !slices.Contains(cert.Subject.Organization, NodesGroup) {
		return "", fmt.Errorf("pki: certificate %q organization %q does not contain %q", cn, cert.Subject.Organization, NodesGroup)
	}
	if err := ValidateNodeName(name); err != nil {
		return "", fmt.Errorf("pki: certificate %q: %w", cn, err)
	}
	return name, nil
}

// ValidateNodeName checks that name is a DNS-1123 subdomain, the rule
// Kubernetes applies to Node names.
func ValidateNodeName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("pki: node name is empty")
	case len(name) > 253:
		return fmt.Errorf("pki: node name is %d characters long, at most 253 are allowed", len(name))
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" {
			return fmt.Errorf("pki: node name %q has an empty label (leading, trailing or double '.')", name)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("pki: node name %q contains %q: only lowercase letters, digits, '-' and '.' are allowed", name, r)
			}
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("pki: node name %q: label %q must start and end with a lowercase letter or digit", name, label)
		}
	}
	return nil
}
