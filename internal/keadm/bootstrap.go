package keadm

import (
	"context"

	"github.com/kubeedge-go/kubeedge/internal/edge/certs"
)

// bootstrapCerts is the default Deps.Bootstrap: the same certificate manager
// edgecore runs, so join fails on exactly what would make edgecore fail.
func (d Deps) bootstrapCerts(ctx context.Context, req BootstrapRequest) error {
	m, err := certs.New(certs.Config{
		Server:   req.Server,
		Token:    req.Token,
		NodeName: req.NodeName,
		CAFile:   req.CAFile,
		CertFile: req.CertFile,
		KeyFile:  req.KeyFile,
	}, certs.Deps{Clock: d.Clock, Logger: d.Logger})
	if err != nil {
		return err
	}
	return m.Bootstrap(ctx)
}
