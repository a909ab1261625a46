package testenv

import (
	"fmt"
	"os"
)

// EgressOptions start kube-apiserver with an egress selector configuration
// (--egress-selector-config-file) and the client certificate it presents to
// kubelets, as CloudStream needs (see internal/cloud/stream).
type EgressOptions struct {
	// ConfigFile is an EgressSelectorConfiguration.
	ConfigFile string
	// KubeletClientCert and KubeletClientKey are
	// --kubelet-client-certificate and --kubelet-client-key.
	KubeletClientCert, KubeletClientKey string
	// KubeletCA, if set, is --kubelet-certificate-authority: kubelet
	// serving certificates are then verified against it.
	KubeletCA string
	// KubeletPreferredAddressTypes, if set, is
	// --kubelet-preferred-address-types (e.g. "InternalIP,Hostname"). The
	// apiserver's node proxy (/api/v1/nodes/N/proxy) refuses node
	// addresses that are not global unicast and hostnames that do not
	// resolve, so edges whose hostnames are not in DNS need InternalIP first.
	KubeletPreferredAddressTypes string
}

// validate checks that the files exist: the apiserver reads them at start.
func (e *EgressOptions) validate() error {
	for _, f := range []struct{ name, path string }{
		{"ConfigFile", e.ConfigFile}, {"KubeletClientCert", e.KubeletClientCert}, {"KubeletClientKey", e.KubeletClientKey},
	} {
		if f.path == "" {
			return fmt.Errorf("control plane options: Egress.%s is empty", f.name)
		}
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("control plane options: Egress.%s: %w", f.name, err)
		}
	}
	if e.KubeletCA != "" {
		if _, err := os.Stat(e.KubeletCA); err != nil {
			return fmt.Errorf("control plane options: Egress.KubeletCA: %w", err)
		}
	}
	return nil
}

func (e *EgressOptions) apiServerArgs() []string {
	if e == nil {
		return nil
	}
	args := []string{
		"--egress-selector-config-file=" + e.ConfigFile,
		"--kubelet-client-certificate=" + e.KubeletClientCert,
		"--kubelet-client-key=" + e.KubeletClientKey,
	}
	if e.KubeletCA != "" {
		args = append(args, "--kubelet-certificate-authority="+e.KubeletCA)
	}
	if e.KubeletPreferredAddressTypes != "" {
		args = append(args, "--kubelet-preferred-address-types="+e.KubeletPreferredAddressTypes)
	}
	return args
}
