package cri

import (
	"fmt"
	"net/url"
	"strings"
)

// ParseEndpoint turns a runtime endpoint as KubeEdge configures it
// (remoteRuntimeEndpoint, e.g. "unix:///run/containerd/containerd.sock") into
// the socket path. A bare absolute path is accepted too. Only unix sockets
// are supported: CRI over TCP has no authentication.
func ParseEndpoint(endpoint string) (string, error) {
	if endpoint == "" {
		return "", fmt.Errorf("cri: endpoint is empty (want unix:///path/to/socket)")
	}
	if strings.HasPrefix(endpoint, "/") {
		return validSocketPath(endpoint, endpoint)
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", fmt.Errorf("cri: endpoint %q: %w", endpoint, err)
	}
	if u.Scheme != "unix" {
		return "", fmt.Errorf("cri: endpoint %q: scheme %q is not supported (want unix:///path/to/socket)", endpoint, u.Scheme)
	}
	if u.Host != "" {
		return "", fmt.Errorf("cri: endpoint %q: unix endpoints have no host (want unix:///path, three slashes)", endpoint)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("cri: endpoint %q: unexpected query, fragment or user info", endpoint)
	}
	return validSocketPath(endpoint, u.Path)
}

func validSocketPath(endpoint, path string) (string, error) {
	if !strings.HasPrefix(path, "/") {
		return "", fmt.Errorf("cri: endpoint %q: socket path %q is not absolute", endpoint, path)
	}
	if strings.ContainsRune(path, 0) {
		return "", fmt.Errorf("cri: endpoint %q: socket path contains a NUL byte", endpoint)
	}
	// sun_path holds 108 bytes including the terminating NUL.
	if len(path) > 107 {
		return "", fmt.Errorf("cri: endpoint %q: socket path is %d bytes, longer than the 107 a unix socket allows", endpoint, len(path))
	}
	return path, nil
}
