package config

import (
	"net"

	"github.com/kubeedge-go/kubeedge/internal/config"
)

// CloudStream carries kubectl logs, exec, attach, port-forward and the
// kubelet metrics endpoints to edge nodes through tunnels the edges open
// (see docs/streams.md). The kube-apiserver reaches it through its egress
// selector: no iptables rule.
type CloudStream struct {
	Enable bool `json:"enable"`
	// Address is the IP both ports listen on.
	Address string `json:"address"`
	// TunnelPort is where edges dial back with their node certificate
	// (KubeEdge: 10004).
	TunnelPort int `json:"tunnelPort"`
	// StreamPort is where the kube-apiserver's egress selector sends
	// CONNECT with its stream client certificate (KubeEdge: 10003).
	StreamPort int `json:"streamPort"`
	// Passthrough dials CONNECT targets that are not edge kubelets (cloud
	// kubelets, webhooks, aggregated APIs) directly; without it they fail.
	Passthrough bool `json:"passthrough"`
	// ClaimTimeoutSeconds is how long a stream waits for its edge to dial back.
	ClaimTimeoutSeconds int `json:"claimTimeoutSeconds"`
	// MaxPendingPerNode bounds the streams of one node waiting for their tunnel.
	MaxPendingPerNode int `json:"maxPendingPerNode"`
}

// DefaultCloudStream is off, as in KubeEdge; enabling it needs the
// apiserver's egress selector (keadm streamcerts).
func DefaultCloudStream() CloudStream {
	return CloudStream{Address: "0.0.0.0", TunnelPort: 10004, StreamPort: 10003, Passthrough: true,
		ClaimTimeoutSeconds: 10, MaxPendingPerNode: 256}
}

// TunnelHostPort and StreamHostPort are the listen addresses.
func (s CloudStream) TunnelHostPort() string {
	return Listener{Address: s.Address, Port: s.TunnelPort}.HostPort()
}
func (s CloudStream) StreamHostPort() string {
	return Listener{Address: s.Address, Port: s.StreamPort}.HostPort()
}

func (s CloudStream) validate(e *config.Errors) {
	if !s.Enable {
		return
	}
	if net.ParseIP(s.Address) == nil {
		e.Addf("modules.cloudStream.address", "%q is not an IP address", s.Address)
	}
	e.CheckPort("modules.cloudStream.tunnelPort", s.TunnelPort)
	e.CheckPort("modules.cloudStream.streamPort", s.StreamPort)
	if s.TunnelPort == s.StreamPort {
		e.Addf("modules.cloudStream.streamPort", "must differ from tunnelPort (%d)", s.TunnelPort)
	}
	e.CheckPositive("modules.cloudStream.claimTimeoutSeconds", int64(s.ClaimTimeoutSeconds))
	e.CheckPositive("modules.cloudStream.maxPendingPerNode", int64(s.MaxPendingPerNode))
}
