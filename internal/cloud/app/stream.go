package app

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"time"

	"github.com/kubeedge-go/kubeedge/internal/cloud/certs"
	"github.com/kubeedge-go/kubeedge/internal/cloud/stream"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// setupStream builds CloudStream and its node index when
// modules.cloudStream is enabled. Stream requests go to the edge over its
// CloudHub session.
func (c *CloudCore) setupStream(mat *certs.Material) error {
	sc := c.cfg.Modules.CloudStream
	if !sc.Enable {
		return nil
	}
	idx, err := stream.NewNodeIndex(c.Client)
	if err != nil {
		return err
	}
	srv, err := stream.New(stream.Config{
		TunnelAddr:        sc.TunnelHostPort(),
		ProxyAddr:         sc.StreamHostPort(),
		ClaimTimeout:      time.Duration(sc.ClaimTimeoutSeconds) * time.Second,
		Passthrough:       sc.Passthrough,
		MaxPendingPerNode: sc.MaxPendingPerNode,
	}, stream.Deps{
		TunnelTLS: mat.ServerTLSConfig(tls.RequireAndVerifyClientCert),
		ProxyTLS:  mat.ServerTLSConfig(tls.RequireAndVerifyClientCert),
		Router:    idx,
		Send: func(node string, m wire.Message) error {
			s := c.Hub.Session(node)
			if s == nil {
				return stream.ErrNodeNotConnected
			}
			return s.Send(m)
		},
		// Edges get kubelet serving certificates for their reported
		// addresses, so that --kubelet-certificate-authority works.
		SignServing: func(csr *x509.CertificateRequest, node string, dns []string, ips []net.IP) ([]byte, error) {
			return mat.CA.SignKubeletServingCSR(csr, node, dns, ips, c.clk.Now(), 0)
		},
		Clock:  c.clk,
		Logger: c.log,
	})
	if err != nil {
		return err
	}
	c.Stream, c.StreamNodes = srv, idx
	return nil
}
