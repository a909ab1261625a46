package mapper

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"k8s.io/utils/clock"
)

// Config configures a mapper. Start from Default and override.
type Config struct {
	// Name, Version and APIVersion are sent in MapperRegister.
	Name       string
	Version    string
	APIVersion string
	// Protocol is the protocol name this mapper serves; edgecore hands it
	// the devices whose spec.protocol.protocolName equals it.
	Protocol string
	// SocketPath is the unix socket the mapper serves DeviceMapperService
	// on, and the address it registers (KubeEdge's mappers use
	// /etc/kubeedge/<name>.sock).
	SocketPath string
	// EdgecoreSocket is edgecore's DeviceManagerService socket (KubeEdge's
	// default /etc/kubeedge/dmi.sock).
	EdgecoreSocket string
	// HealthAddr, when set, serves GET /healthz, /readyz and /devices on
	// that TCP address (e.g. 127.0.0.1:7777).
	HealthAddr string

	// DefaultCollectCycle and DefaultReportCycle apply to properties whose
	// collectCycle/reportCycle is 0 (KubeEdge uses 1 s for both).
	DefaultCollectCycle time.Duration
	DefaultReportCycle  time.Duration
	// MinCycle is the shortest collect or report cycle accepted; shorter
	// ones are raised to it, so one manifest cannot make the mapper spin.
	MinCycle time.Duration
	// StateRefresh is how often an unchanged device state is reported
	// again (changes are reported at once).
	StateRefresh time.Duration

	// ReportQPS and ReportBurst limit this mapper's calls to edgecore
	// (KubeEdge shares one 1 req/s limiter across all mappers). Reports
	// waiting for the limiter coalesce per device: only the newest values
	// are sent.
	ReportQPS   float64
	ReportBurst int
	// CallTimeout bounds each call to edgecore and each driver operation.
	CallTimeout time.Duration
	// RetryMin and RetryMax bound the back-off of registration and of
	// device reconnects.
	RetryMin, RetryMax time.Duration

	// PushQueue is how many push-method messages may wait; more are dropped
	// (and counted) rather than stall device collection.
	PushQueue   int
	PushWorkers int

	// Clock is injected for tests; nil means the real clock.
	Clock clock.WithTicker
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Default returns a Config with KubeEdge's defaults for protocol.
func Default(protocol string) Config {
	return Config{
		Name:                protocol + "-mapper",
		Version:             "v1.0.0",
		APIVersion:          "v1beta1",
		Protocol:            protocol,
		SocketPath:          "/etc/kubeedge/" + protocol + ".sock",
		EdgecoreSocket:      "/etc/kubeedge/dmi.sock",
		DefaultCollectCycle: time.Second,
		DefaultReportCycle:  time.Second,
		MinCycle:            10 * time.Millisecond,
		StateRefresh:        time.Minute,
		ReportQPS:           100,
		ReportBurst:         200,
		CallTimeout:         5 * time.Second,
		RetryMin:            500 * time.Millisecond,
		RetryMax:            30 * time.Second,
		PushQueue:           1024,
		PushWorkers:         4,
	}
}

// Validate checks the config without side effects and names the offending
// field.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("mapper config %s: %s", field, fmt.Sprintf(format, a...)))
	}
	if c.Name == "" {
		bad("Name", "must not be empty")
	}
	if c.Protocol == "" {
		bad("Protocol", "must not be empty")
	}
	// sockaddr_un holds 108 bytes including the terminating NUL.
	if c.SocketPath == "" || len(c.SocketPath) > 107 {
		bad("SocketPath", "%q must be a unix socket path of 1..107 bytes", c.SocketPath)
	}
	if c.EdgecoreSocket == "" || len(c.EdgecoreSocket) > 107 {
		bad("EdgecoreSocket", "%q must be a unix socket path of 1..107 bytes", c.EdgecoreSocket)
	}
	if c.HealthAddr != "" {
		if _, _, err := net.SplitHostPort(c.HealthAddr); err != nil {
			bad("HealthAddr", "%q is not host:port: %v", c.HealthAddr, err)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"DefaultCollectCycle", c.DefaultCollectCycle}, {"DefaultReportCycle", c.DefaultReportCycle}, {"MinCycle", c.MinCycle},
		{"StateRefresh", c.StateRefresh}, {"CallTimeout", c.CallTimeout}, {"RetryMin", c.RetryMin}, {"RetryMax", c.RetryMax}} {
		if d.v <= 0 {
			bad(d.name, "must be positive, got %v", d.v)
		}
	}
	if c.RetryMax < c.RetryMin {
		bad("RetryMax", "%v is below RetryMin %v", c.RetryMax, c.RetryMin)
	}
	if c.ReportQPS <= 0 {
		bad("ReportQPS", "must be positive, got %v", c.ReportQPS)
	}
	if c.ReportBurst < 1 {
		bad("ReportBurst", "must be at least 1, got %d", c.ReportBurst)
	}
	if c.PushQueue < 1 || c.PushWorkers < 1 {
		bad("PushQueue/PushWorkers", "must be at least 1, got %d/%d", c.PushQueue, c.PushWorkers)
	}
	return errors.Join(errs...)
}
