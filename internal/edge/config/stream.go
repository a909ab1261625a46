package config

import (
	"net"

	"github.com/kubeedge-go/kubeedge/internal/config"
)

// EdgeStream opens tunnels to CloudStream on request and serves the edge's
// kubelet API (logs, exec, attach, port-forward, stats) on them. Nothing
// listens on the network.
type EdgeStream struct {
	Enable bool `json:"enable"`
	// Server is CloudStream's tunnel address, host:port (KubeEdge:
	// 127.0.0.1:10004); the host must be in cloudcore's certificate.
	Server string `json:"server"`
	// Port is the kubelet port the node reports
	// (status.daemonEndpoints.kubeletEndpoint.port) and the apiserver
	// asks CloudStream for; nothing listens on it (KubeEdge edged: 10350).
	Port int `json:"port"`
	// HandshakeTimeout bounds opening one tunnel, in seconds (KubeEdge: 30).
	HandshakeTimeout int `json:"handshakeTimeout"`
	// MaxConcurrentTunnels bounds tunnels being opened at once.
	MaxConcurrentTunnels int `json:"maxConcurrentTunnels"`
	// RequireClientCertificate refuses kubelet API requests without a
	// client certificate of the KubeEdge CA in kubeedge:stream-clients
	// (the apiserver's --kubelet-client-certificate).
	RequireClientCertificate bool `json:"requireClientCertificate"`
}

// DefaultEdgeStream is off, as in KubeEdge.
func DefaultEdgeStream() EdgeStream {
	return EdgeStream{Server: "127.0.0.1:10004", Port: 10350, HandshakeTimeout: 30, MaxConcurrentTunnels: 128,
		RequireClientCertificate: true}
}

func (s EdgeStream) validate(e *config.Errors) {
	if !s.Enable {
		return
	}
	if _, _, err := net.SplitHostPort(s.Server); err != nil {
		e.Addf("modules.edgeStream.server", "%q is not host:port: %v", s.Server, err)
	}
	e.CheckPort("modules.edgeStream.port", s.Port)
	e.CheckPositive("modules.edgeStream.handshakeTimeout", int64(s.HandshakeTimeout))
	e.CheckPositive("modules.edgeStream.maxConcurrentTunnels", int64(s.MaxConcurrentTunnels))
}
