package app

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"k8s.io/klog/v2"

	"github.com/kubeedge-go/kubeedge/internal/cloud/config"
	cfgutil "github.com/kubeedge-go/kubeedge/internal/config"
	"github.com/kubeedge-go/kubeedge/internal/debugserver"
	"github.com/kubeedge-go/kubeedge/internal/logging"
)

// Main is cloudcore's command line: --config FILE, --defaultconfig.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cloudcore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/kubeedge/config/cloudcore.yaml", "configuration file")
	printDefault := fs.Bool("defaultconfig", false, "print the default configuration and exit")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	debugAddr := fs.String("debug-addr", "", "serve /debug/pprof on this address (e.g. 127.0.0.1:6060); off when empty")
	if err := fs.Parse(args); err != nil {
		return err
	}
	setGCPercent()
	if *printDefault {
		b, err := cfgutil.Marshal(config.Default())
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
	klog.SetSlogLogger(log.With("source", "client-go"))
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
	cc, err := New(cfg, Deps{Logger: log})
	if err != nil {
		return err
	}
	if err := cc.Run(ctx); err != nil {
		return fmt.Errorf("cloudcore: %w", err)
	}
	return nil
}

// setGCPercent makes the garbage collector keep less headroom than Go's
// default (GOGC=100) unless GOGC is set: cloudcore's memory is mostly
// per-session state that lives for hours, so a collection every 50% of heap
// growth costs little CPU, and at 2,000 hollow sessions it took the RSS per
// session from 70.6 to 50.9 KiB (docs/benchmarks.md).
func setGCPercent() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
}
