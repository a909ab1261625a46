package app

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	cfgutil "github.com/kubeedge-go/kubeedge/internal/config"
	"github.com/kubeedge-go/kubeedge/internal/debugserver"
	"github.com/kubeedge-go/kubeedge/internal/edge/config"
	"github.com/kubeedge-go/kubeedge/internal/logging"
)

// Main is edgecore's command line: --config FILE, --defaultconfig, --minconfig.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("edgecore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/kubeedge/config/edgecore.yaml", "configuration file")
	printDefault := fs.Bool("defaultconfig", false, "print the full default configuration and exit")
	printMin := fs.Bool("minconfig", false, "print the minimal configuration and exit")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	debugAddr := fs.String("debug-addr", "", "serve /debug/pprof on this address (e.g. 127.0.0.1:6061); off when empty")
	if err := fs.Parse(args); err != nil {
		return err
	}
	setGCPercent()
	if *printDefault || *printMin {
		host, _ := os.Hostname()
		c := config.Default(host)
		var v any = c
		if *printMin {
			v = c.Min()
		}
		b, err := cfgutil.Marshal(v)
		if err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	}
	log, err := logging.New(stderr, *level)
	if err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	if *debugAddr != "" {
		stop, err := debugserver.Serve(ctx, *debugAddr, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	ec, err := New(cfg, Deps{Logger: log})
	if err != nil {
		return err
	}
	if err := ec.Run(ctx); err != nil {
		return fmt.Errorf("edgecore: %w", err)
	}
	return nil
}

// setGCPercent makes the garbage collector keep less headroom than Go's
// default (GOGC=100) unless GOGC is set: an edge host is short of memory
// rather than CPU, and edgecore's heap is small and long-lived.
func setGCPercent() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
}
