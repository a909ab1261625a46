package stream

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/kubeedge-go/kubeedge/internal/pki"
)

// DefaultClientCommonName is the user the kube-apiserver's stream client
// certificate names.
const DefaultClientCommonName = "kube-apiserver-kubelet-client"

// ClientFilesOptions says what WriteClientFiles writes.
type ClientFilesOptions struct {
	// Dir receives the files; it is created (0700) if missing.
	Dir string
	// CommonName of the client certificate; default
	// DefaultClientCommonName.
	CommonName string
	// Validity of the certificate; default pki.DefaultCertValidity.
	Validity time.Duration
	// ProxyURL is CloudStream's proxy port as the apiserver reaches it,
	// https://host:10003; when set, an EgressSelectorConfiguration using
	// the files is written too. The host must be in cloudcore's server
	// certificate (modules.cloudHub.advertiseAddress or dnsNames).
	ProxyURL string
}

// ClientFiles are the paths WriteClientFiles wrote.
type ClientFiles struct {
	CAFile, CertFile, KeyFile string
	// EgressConfigFile is empty unless a ProxyURL was given.
	EgressConfigFile string
}

// File names inside ClientFilesOptions.Dir.
const (
	ClientCAFileName     = "ca.crt"
	ClientCertFileName   = "stream-client.crt"
	ClientKeyFileName    = "stream-client.key"
	EgressConfigFileName = "egress-selector-configuration.yaml"
)

// WriteClientFiles issues a stream client certificate from ca and writes it,
// its key and the CA certificate (PEM) to opts.Dir, plus the apiserver's
// egress selector configuration when opts.ProxyURL is set. The same
// certificate serves as the apiserver's --kubelet-client-certificate, which
// edge kubelet servers require.
func WriteClientFiles(ca *pki.CA, opts ClientFilesOptions, now time.Time) (ClientFiles, error) {
	if opts.Dir == "" {
		return ClientFiles{}, errors.New("stream: client files: Dir is empty")
	}
	if opts.CommonName == "" {
		opts.CommonName = DefaultClientCommonName
	}
	if opts.ProxyURL != "" {
		u, err := url.Parse(opts.ProxyURL)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") {
			return ClientFiles{}, fmt.Errorf("stream: proxy URL %q is not https://host:port", opts.ProxyURL)
		}
	}
	certDER, keyDER, err := ca.IssueStreamClientCert(opts.CommonName, now, opts.Validity)
	if err != nil {
		return ClientFiles{}, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return ClientFiles{}, fmt.Errorf("stream: client files: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return ClientFiles{}, fmt.Errorf("stream: client files: %w", err)
	}
	f := ClientFiles{
		CAFile:   filepath.Join(dir, ClientCAFileName),
		CertFile: filepath.Join(dir, ClientCertFileName),
		KeyFile:  filepath.Join(dir, ClientKeyFileName),
	}
	for _, w := range []struct {
		path string
		data []byte
		perm os.FileMode
	}{
		{f.CAFile, pki.EncodeCertPEM(ca.CertDER), 0o644},
		{f.CertFile, pki.EncodeCertPEM(certDER), 0o644},
		{f.KeyFile, pki.EncodeKeyPEM(keyDER), 0o600},
	} {
		if err := os.WriteFile(w.path, w.data, w.perm); err != nil {
			return ClientFiles{}, fmt.Errorf("stream: client files: %w", err)
		}
	}
	if opts.ProxyURL != "" {
		b, err := EgressSelectorConfig(opts.ProxyURL, f)
		if err != nil {
			return ClientFiles{}, err
		}
		f.EgressConfigFile = filepath.Join(dir, EgressConfigFileName)
		if err := os.WriteFile(f.EgressConfigFile, b, 0o644); err != nil {
			return ClientFiles{}, fmt.Errorf("stream: client files: %w", err)
		}
	}
	return f, nil
}

// The kube-apiserver's EgressSelectorConfiguration
// (apiserver.k8s.io/v1beta1, served by Kubernetes 1.20 through 1.35), only
// the parts used here.
type egressSelectorConfiguration struct {
	APIVersion       string            `json:"apiVersion"`
	Kind             string            `json:"kind"`
	EgressSelections []egressSelection `json:"egressSelections"`
}

type egressSelection struct {
	Name       string           `json:"name"`
	Connection egressConnection `json:"connection"`
}

type egressConnection struct {
	ProxyProtocol string          `json:"proxyProtocol"`
	Transport     egressTransport `json:"transport"`
}

type egressTransport struct {
	TCP egressTCP `json:"tcp"`
}

type egressTCP struct {
	URL       string          `json:"url"`
	TLSConfig egressTLSConfig `json:"tlsConfig"`
}

type egressTLSConfig struct {
	CABundle   string `json:"caBundle"`
	ClientKey  string `json:"clientKey"`
	ClientCert string `json:"clientCert"`
}

// EgressSelectorConfig renders the configuration that sends the apiserver's
// "cluster" traffic (kubelets, and pods, services, webhooks by service and
// aggregated APIs, which CloudStream passes through) to CloudStream with
// HTTP CONNECT over mutual TLS. "controlplane" and "etcd" stay direct.
func EgressSelectorConfig(proxyURL string, f ClientFiles) ([]byte, error) {
	c := egressSelectorConfiguration{
		APIVersion: "apiserver.k8s.io/v1beta1",
		Kind:       "EgressSelectorConfiguration",
		EgressSelections: []egressSelection{{
			Name: "cluster",
			Connection: egressConnection{
				ProxyProtocol: "HTTPConnect",
				Transport: egressTransport{TCP: egressTCP{URL: proxyURL, TLSConfig: egressTLSConfig{
					CABundle: f.CAFile, ClientKey: f.KeyFile, ClientCert: f.CertFile,
				}}},
			},
		}},
	}
	b, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("stream: egress selector configuration: %w", err)
	}
	return append([]byte("# kube-apiserver --egress-selector-config-file: kubelet and cluster traffic through kubeedge CloudStream.\n"), b...), nil
}

// APIServerFlags are the kube-apiserver flags that use f.
func APIServerFlags(f ClientFiles) []string {
	flags := []string{
		"--kubelet-client-certificate=" + f.CertFile,
		"--kubelet-client-key=" + f.KeyFile,
	}
	if f.EgressConfigFile != "" {
		flags = append([]string{"--egress-selector-config-file=" + f.EgressConfigFile}, flags...)
	}
	return flags
}
