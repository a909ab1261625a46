package hollow

import (
	"context"
	"flag"
	"io"
	"time"

	"github.com/kubeedge-go/kubeedge/internal/logging"
)

// Main is the hollowedge command line.
func Main(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("hollowedge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c Config
	fs.IntVar(&c.Count, "count", 10, "number of hollow edge nodes")
	fs.StringVar(&c.NamePrefix, "name-prefix", "hollow-", "node name prefix (names are prefix + index)")
	fs.StringVar(&c.Dir, "dir", "/tmp/hollowedge", "directory for the nodes' certificates")
	fs.StringVar(&c.CloudHost, "cloud-host", "127.0.0.1", "cloudcore address")
	fs.IntVar(&c.HubPort, "hub-port", 10000, "CloudHub WebSocket port")
	fs.IntVar(&c.QUICPort, "quic-port", 10001, "CloudHub QUIC port")
	fs.IntVar(&c.CertPort, "cert-port", 10002, "certificate (join) port")
	fs.StringVar(&c.Token, "token", "", "join token (keadm gettoken)")
	fs.StringVar(&c.Transport, "transport", "websocket", "websocket or quic")
	fs.IntVar(&c.StatusFreq, "status-frequency", 60, "seconds between node status reports")
	fs.IntVar(&c.Heartbeat, "heartbeat", 15, "seconds between keepalives")
	fs.IntVar(&c.StartRate, "start-rate", 200, "nodes started per second (0 = all at once)")
	level := fs.String("log-level", "info", "log level")
	report := fs.Duration("report", 5*time.Second, "how often to log the number of connected nodes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := logging.New(stderr, *level)
	if err != nil {
		return err
	}
	f, err := New(c, log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the reporter when the fleet ends
	go func() {
		t := time.NewTicker(*report)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				log.Info("hollow fleet", "connected", f.Connected(), "of", c.Count)
			}
		}
	}()
	return f.Run(ctx)
}
