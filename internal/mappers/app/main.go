// Package app is the command line of the mapper binary: one binary for
// every protocol, chosen by the first argument.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/kubeedge-go/kubeedge/internal/logging"
	"github.com/kubeedge-go/kubeedge/internal/mappers/ble"
	"github.com/kubeedge-go/kubeedge/internal/mappers/modbus"
	"github.com/kubeedge-go/kubeedge/internal/mappers/modbus/sim"
	"github.com/kubeedge-go/kubeedge/internal/mappers/opcua"
	"github.com/kubeedge-go/kubeedge/pkg/mapper"
)

// protocols names every driver the binary carries, with its constructor:
// a typed table, not a registry filled by init functions.
var protocols = []struct {
	name string
	new  func() mapper.Driver
	doc  string
}{
	{modbus.Protocol, func() mapper.Driver { return modbus.New() }, "Modbus TCP and RTU"},
	{opcua.Protocol, func() mapper.Driver { return opcua.New() }, "OPC-UA (read, write, subscriptions; None and Basic256Sha256 security)"},
	{ble.Protocol, func() mapper.Driver { return ble.New() }, "Bluetooth LE GATT (read, write, notify) through BlueZ over D-Bus"},
}

const usage = `usage: mapper PROTOCOL [flags]
       mapper simulate-modbus [--listen 127.0.0.1:1502]

Runs a KubeEdge-compatible device mapper for PROTOCOL, serving DMI v1beta1
DeviceMapperService on --socket and registering with edgecore at
--edgecore-socket. simulate-modbus runs a simulated Modbus TCP thermostat
(holding 0: temperature x10, holding 1: setpoint, coil 0: heating) for
demos. Protocols:
`

// Main runs the mapper named by args[0] until ctx is done.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		printUsage(stderr)
		return errors.New("mapper: name the protocol as the first argument")
	}
	proto := args[0]
	if proto == "simulate-modbus" {
		return simulate(ctx, args[1:], stderr)
	}
	var newDriver func() mapper.Driver
	for _, p := range protocols {
		if p.name == proto {
			newDriver = p.new
		}
	}
	if newDriver == nil {
		printUsage(stderr)
		return fmt.Errorf("mapper: unknown protocol %q", proto)
	}
	cfg := mapper.Default(proto)
	fs := flag.NewFlagSet("mapper "+proto, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Name, "name", cfg.Name, "mapper name sent in MapperRegister")
	fs.StringVar(&cfg.Protocol, "protocol-name", cfg.Protocol, "protocol name to register (devices' spec.protocol.protocolName)")
	fs.StringVar(&cfg.SocketPath, "socket", cfg.SocketPath, "unix socket to serve DeviceMapperService on")
	fs.StringVar(&cfg.EdgecoreSocket, "edgecore-socket", cfg.EdgecoreSocket, "edgecore's DeviceManagerService socket")
	fs.StringVar(&cfg.HealthAddr, "health-addr", "127.0.0.1:7777", "address of /healthz, /readyz and /devices (empty: off)")
	fs.Float64Var(&cfg.ReportQPS, "report-qps", cfg.ReportQPS, "rate limit of calls to edgecore")
	fs.IntVar(&cfg.ReportBurst, "report-burst", cfg.ReportBurst, "burst of calls to edgecore")
	fs.DurationVar(&cfg.DefaultCollectCycle, "default-collect-cycle", cfg.DefaultCollectCycle, "collect cycle of properties that give none")
	fs.DurationVar(&cfg.DefaultReportCycle, "default-report-cycle", cfg.DefaultReportCycle, "report cycle of properties that give none")
	fs.DurationVar(&cfg.StateRefresh, "state-refresh", cfg.StateRefresh, "how often unchanged states and twins are reported again")
	fs.DurationVar(&cfg.CallTimeout, "call-timeout", 5*time.Second, "timeout of each call to edgecore and each device operation")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("mapper: unexpected arguments %q", fs.Args())
	}
	log, err := logging.New(stderr, *level)
	if err != nil {
		return err
	}
	cfg.Logger = log
	m, err := mapper.New(cfg, newDriver())
	if err != nil {
		return err
	}
	return m.Run(ctx)
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, usage)
	for _, p := range protocols {
		fmt.Fprintf(w, "  %-8s %s\n", p.name, p.doc)
	}
	fmt.Fprintln(w, "Run 'mapper PROTOCOL -h' for the flags.")
}

func simulate(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("mapper simulate-modbus", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:1502", "host:port to serve Modbus TCP on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "simulated Modbus thermostat on %s\n", *listen)
	return sim.Serve(ctx, *listen, sim.New(nil))
}
