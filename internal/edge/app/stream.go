package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/kubeedge-go/kubeedge/internal/edge/config"
	"github.com/kubeedge-go/kubeedge/internal/edge/cri"
	"github.com/kubeedge-go/kubeedge/internal/edge/kubeletserver"
	edgestream "github.com/kubeedge-go/kubeedge/internal/edge/stream"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// kubeletPort is the port the node reports for its kubelet: EdgeStream's
// when enabled (the apiserver asks CloudStream for it), else none.
func kubeletPort(cfg *config.EdgeCore) int32 {
	if !cfg.Modules.EdgeStream.Enable {
		return 0
	}
	return int32(cfg.Modules.EdgeStream.Port)
}

// setupStream builds EdgeStream and the kubelet API server when
// modules.edgeStream is enabled. Both use the node certificate: to dial
// CloudStream's tunnel port, and to serve the apiserver's TLS sessions.
func (e *EdgeCore) setupStream() error {
	sc := e.cfg.Modules.EdgeStream
	if !sc.Enable {
		return nil
	}
	rt, err := cri.Dial(e.cfg.Modules.Edged.RemoteRuntimeEndpoint, cri.Options{})
	if err != nil {
		return err
	}
	ks, err := kubeletserver.New(kubeletserver.Config{NodeName: e.cfg.NodeName(), AllowAnonymous: !sc.RequireClientCertificate},
		kubeletserver.Deps{
			Runtime: rt,
			// The serving certificate from the cloud once there is one,
			// else the node certificate (unverifiable as a server's).
			Certificate: func() *tls.Certificate {
				if e.Stream != nil {
					if c := e.Stream.ServingCert(); c != nil {
						return c
					}
				}
				return e.Certs.Current()
			},
			ClientCAs: func() *x509.CertPool { return e.Certs.ClientTLSConfig("").RootCAs },
			// edged (created in Run) knows which instance a request means.
			ContainerID: func(ctx context.Context, ns, pod, container string, previous bool) (string, error) {
				select {
				case <-e.ready:
				default:
					return "", nil
				}
				if e.Edged == nil {
					return "", nil
				}
				return e.Edged.ContainerID(ctx, ns, pod, container, previous)
			},
			Clock:  e.clk,
			Logger: e.log,
		})
	if err != nil {
		_ = rt.Close()
		return err
	}
	host, _, _ := net.SplitHostPort(sc.Server) // validated by cfg.Validate
	es, err := edgestream.New(edgestream.Config{
		Server: sc.Server, MaxConcurrent: sc.MaxConcurrentTunnels,
		HandshakeTimeout: time.Duration(sc.HandshakeTimeout) * time.Second,
		NodeName:         e.cfg.NodeName(),
	}, edgestream.Deps{
		TLS:    func() *tls.Config { return e.Certs.ClientTLSConfig(host) },
		Serve:  ks.ServeConn,
		Clock:  e.clk,
		Logger: e.log,
	})
	if err != nil {
		_ = rt.Close()
		return err
	}
	e.Stream, e.Kubelet, e.streamCRI = es, ks, rt
	return nil
}

// runStream starts the kubelet API server and EdgeStream under g.
func (e *EdgeCore) runStream(ctx context.Context, g *errgroup.Group) {
	if e.Stream == nil {
		return
	}
	g.Go(func() error { return e.Kubelet.Run(ctx) })
	g.Go(func() error { return e.Stream.Run(ctx) })
}

// closeStream releases the CRI connection.
func (e *EdgeCore) closeStream() {
	if e.streamCRI != nil {
		_ = e.streamCRI.Close()
	}
}

// handleStream takes a stream request from the cloud; it reports whether m
// was one.
func (h *edgeHandler) handleStream(ctx context.Context, m wire.Message) bool {
	if m.Resource.Type != wire.TypeStream {
		return false
	}
	var err error
	if h.Stream == nil {
		err = errStreamDisabled
	} else {
		err = h.Stream.HandleMessage(m)
	}
	if err != nil {
		h.log.Warn("stream request refused", "resource", m.Resource, "err", err)
		_ = h.Hub.SendNow(ctx, wire.NewError(h.clk.Now(), wire.SourceEdgeHub, m.Header.ID, err.Error()))
	}
	return true
}

var errStreamDisabled = errors.New("modules.edgeStream is not enabled on this edge")
