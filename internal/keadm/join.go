package keadm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kubeedge-go/kubeedge/internal/config"
	edgeconfig "github.com/kubeedge-go/kubeedge/internal/edge/config"
	"github.com/kubeedge-go/kubeedge/internal/pki"
)

// connectTimeout bounds the wait for a started edgecore to connect.
const connectTimeout = 30 * time.Second

// ConnectedMessage is what edgecore logs when a session with the cloud
// starts; join waits for it.
const ConnectedMessage = "connected to cloud"

// Flag names, as in KubeEdge's keadm where it has them.
const (
	flagCloudCore       = "cloudcore-ipport"
	flagToken           = "token"
	flagNodeName        = "edgenode-name"
	flagCertPort        = "certport"
	flagQuicPort        = "quicport"
	flagHubProtocol     = "hub-protocol"
	flagRuntimeEndpoint = "remote-runtime-endpoint"
	flagKubeEdgeVersion = "kubeedge-version"
	flagConfig          = "config"
	flagLabels          = "labels"
	flagNodeIP          = "node-ip"
	flagDataDir         = "data-dir"
	flagEdgecoreBinary  = "edgecore-binary"
	flagPrepareOnly     = "prepare-only"
	flagForce           = "force"
)

// joinOptions are join's flags.
type joinOptions struct {
	CloudCore       string
	Token           string
	NodeName        string
	CertPort        int
	QuicPort        int
	HubProtocol     string
	RuntimeEndpoint string
	KubeEdgeVersion string
	ConfigPath      string
	Labels          []string
	NodeIP          string
	DataDir         string
	EdgecoreBinary  string
	PrepareOnly     bool
	Force           bool
	// Sets are --set key=value configuration overrides, applied last.
	Sets []string
}

func defaultJoinOptions() joinOptions {
	return joinOptions{
		CertPort:    10002,
		QuicPort:    10001,
		HubProtocol: "websocket",
		ConfigPath:  DefaultConfigPath,
	}
}

func newJoinCommand(d Deps) *cobra.Command {
	o := defaultJoinOptions()
	cmd := &cobra.Command{
		Use:   "join",
		Short: "Join this host to the cloud as an edge node",
		Long: "join writes the edgecore configuration, fetches the node certificate from cloudcore with the\n" +
			"join token (keadm gettoken on the cloud side), starts edgecore in the background and waits until\n" +
			"it has connected.",
		Example: "  keadm join --cloudcore-ipport=192.168.1.10:10000 --token=$TOKEN --edgenode-name=edge-1",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed(flagNodeName) {
				// KubeEdge names the node after the host when no name is given.
				h, err := os.Hostname()
				if err != nil {
					return fmt.Errorf("--%s not given and the host name is unknown: %w", flagNodeName, err)
				}
				o.NodeName = strings.ToLower(h)
			}
			return join(cmd.Context(), d, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.CloudCore, flagCloudCore, "e", o.CloudCore, "IP:Port address of cloudcore's websocket server (port 10000)")
	f.StringVarP(&o.Token, flagToken, "t", o.Token, "join token: run keadm gettoken on the cloud side")
	f.StringVarP(&o.NodeName, flagNodeName, "i", o.NodeName, "name of this node (default: the host name in lower case)")
	f.IntVarP(&o.CertPort, flagCertPort, "s", o.CertPort, "cloudcore's certificate port")
	f.IntVar(&o.QuicPort, flagQuicPort, o.QuicPort, "cloudcore's QUIC port")
	f.StringVar(&o.HubProtocol, flagHubProtocol, o.HubProtocol, "protocol to the cloud: websocket or quic")
	f.StringVarP(&o.RuntimeEndpoint, flagRuntimeEndpoint, "p", o.RuntimeEndpoint, "CRI endpoint, e.g. unix:///run/containerd/containerd.sock")
	f.StringVar(&o.KubeEdgeVersion, flagKubeEdgeVersion, o.KubeEdgeVersion, "accepted for compatibility and ignored: the local edgecore binary is used")
	f.StringVarP(&o.ConfigPath, flagConfig, "c", o.ConfigPath, "where to write the edgecore configuration")
	f.StringSliceVarP(&o.Labels, flagLabels, "l", o.Labels, "node labels, key1=value1,key2=value2")
	f.StringVar(&o.NodeIP, flagNodeIP, o.NodeIP, "IP address the node reports in its status")
	f.StringVar(&o.DataDir, flagDataDir, o.DataDir, "one directory for certificates, database, log and pid file (default: certificates under /etc/kubeedge, the rest under /var/lib/kubeedge)")
	f.StringVar(&o.EdgecoreBinary, flagEdgecoreBinary, o.EdgecoreBinary, "edgecore executable (default: edgecore next to keadm, else in PATH)")
	f.BoolVar(&o.PrepareOnly, flagPrepareOnly, o.PrepareOnly, "write configuration and certificates, print the command that starts edgecore, and stop there")
	f.BoolVar(&o.Force, flagForce, o.Force, "overwrite an existing configuration and certificates")
	f.StringArrayVar(&o.Sets, "set", o.Sets, "set a configuration field, e.g. --set modules.edged.cgroupRoot=/kubepods (repeatable; lists separated by ';')")
	return cmd
}

// plan is a validated join: what to write and what to run.
type plan struct {
	paths    layout
	config   *edgeconfig.EdgeCore
	edgecore string // absolute path; empty with --prepare-only when none is found
}

// validate checks every flag and returns what join will do. It has no side
// effects; the error lists every problem, each naming its flag.
func (o joinOptions) validate() (*plan, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	host := ""
	switch h, port, err := net.SplitHostPort(o.CloudCore); {
	case o.CloudCore == "":
		bad("--%s is required: cloudcore's address, e.g. 192.168.1.10:10000", flagCloudCore)
	case err != nil:
		bad("--%s %q: want HOST:PORT, e.g. 192.168.1.10:10000", flagCloudCore, o.CloudCore)
	case h == "":
		bad("--%s %q: the host is empty", flagCloudCore, o.CloudCore)
	case !validPort(port):
		bad("--%s %q: port %q is not a number in 1-65535", flagCloudCore, o.CloudCore, port)
	default:
		host = h
	}
	if o.Token == "" {
		bad("--%s is required: run `keadm gettoken` on the cloud side", flagToken)
	} else if _, _, err := pki.ParseToken(o.Token); err != nil {
		bad("--%s: %w", flagToken, err)
	}
	if err := pki.ValidateNodeName(o.NodeName); err != nil {
		bad("--%s: %w", flagNodeName, err)
	}
	for _, p := range []struct {
		flag string
		port int
	}{{flagCertPort, o.CertPort}, {flagQuicPort, o.QuicPort}} {
		if p.port < 1 || p.port > 65535 {
			bad("--%s %d is out of range 1-65535", p.flag, p.port)
		}
	}
	if o.HubProtocol != "websocket" && o.HubProtocol != "quic" {
		bad("--%s %q: want websocket or quic", flagHubProtocol, o.HubProtocol)
	}
	if o.RuntimeEndpoint != "" {
		if err := validateRuntimeEndpoint(o.RuntimeEndpoint); err != nil {
			bad("--%s %q: %w", flagRuntimeEndpoint, o.RuntimeEndpoint, err)
		}
	}
	labels, err := parseLabels(o.Labels)
	if err != nil {
		bad("--%s: %w", flagLabels, err)
	}
	if o.NodeIP != "" && net.ParseIP(o.NodeIP) == nil {
		bad("--%s %q is not an IP address", flagNodeIP, o.NodeIP)
	}
	paths, err := newLayout(o.DataDir, o.ConfigPath)
	if err != nil {
		errs = append(errs, err)
	}
	bin, err := findEdgecore(o.EdgecoreBinary)
	if err != nil && (!o.PrepareOnly || o.EdgecoreBinary != "") {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, flagErrors(errs)
	}

	c := edgeconfig.Default(o.NodeName)
	c.Database.DataSource = paths.Database
	c.Database.EncryptionKeyFile = paths.StoreKey
	if paths.PodsRoot != "" {
		c.Modules.Edged.RootDirectory, c.Modules.Edged.PodLogsDirectory = paths.PodsRoot, paths.PodLogs
		// A unix socket path is limited to 108 bytes; a deep data directory
		// keeps the default socket.
		if sock := filepath.Join(filepath.Dir(paths.PodsRoot), "dmi.sock"); len(sock) < 100 {
			c.Modules.DMI.Socket = sock
		}
	}
	hub := &c.Modules.EdgeHub
	hub.Token = strings.TrimSpace(o.Token)
	hub.HTTPServer = "https://" + net.JoinHostPort(host, strconv.Itoa(o.CertPort))
	hub.TLSCAFile, hub.TLSCertFile, hub.TLSPrivateKeyFile = paths.CAFile, paths.CertFile, paths.KeyFile
	hub.WebSocket = edgeconfig.HubAddr{Enable: o.HubProtocol == "websocket", Server: o.CloudCore}
	hub.Quic = edgeconfig.HubAddr{Enable: o.HubProtocol == "quic", Server: net.JoinHostPort(host, strconv.Itoa(o.QuicPort))}
	c.Modules.Edged.NodeIP = o.NodeIP
	c.Modules.Edged.NodeLabels = labels
	if o.RuntimeEndpoint != "" {
		c.Modules.Edged.RemoteRuntimeEndpoint = o.RuntimeEndpoint
	}
	if err := applySets(c, o.Sets); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("the configuration built from the flags is invalid: %w", err)
	}
	return &plan{paths: paths, config: c, edgecore: bin}, nil
}

// flagErrors lists every problem with the flags, one per line.
type flagErrors []error

func (e flagErrors) Error() string {
	if len(e) == 1 {
		return e[0].Error()
	}
	lines := make([]string, len(e))
	for i, err := range e {
		lines[i] = "  " + err.Error()
	}
	return fmt.Sprintf("%d problems with the flags:\n%s", len(e), strings.Join(lines, "\n"))
}

func (e flagErrors) Unwrap() []error { return e }

func validPort(s string) bool {
	p, err := strconv.Atoi(s)
	return err == nil && p >= 1 && p <= 65535
}

func validateRuntimeEndpoint(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return err
	case u.Scheme == "unix" && filepath.IsAbs(u.Path) && u.Host == "":
		return nil
	case u.Scheme == "tcp" && u.Host != "":
		return nil
	default:
		return errors.New("want unix:///path/to/socket or tcp://host:port")
	}
}

// parseLabels parses key=value items, each checked as a Kubernetes label.
func parseLabels(items []string) (map[string]string, error) {
	if len(items) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(items))
	var errs []string
	for _, it := range items {
		k, v, ok := strings.Cut(it, "=")
		if !ok {
			errs = append(errs, fmt.Sprintf("%q: want key=value", it))
			continue
		}
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			errs = append(errs, fmt.Sprintf("key %q: %s", k, strings.Join(msgs, "; ")))
			continue
		}
		if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
			errs = append(errs, fmt.Sprintf("value %q of %q: %s", v, k, strings.Join(msgs, "; ")))
			continue
		}
		if prev, dup := out[k]; dup && prev != v {
			errs = append(errs, fmt.Sprintf("key %q given twice (%q and %q)", k, prev, v))
			continue
		}
		out[k] = v
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, ", "))
	}
	return out, nil
}

// findEdgecore resolves the edgecore executable: the flag's value, else
// edgecore next to keadm's own executable, else edgecore in PATH.
func findEdgecore(flag string) (string, error) {
	if flag != "" {
		p, err := exec.LookPath(flag)
		if err != nil {
			return "", fmt.Errorf("--%s %q: %w", flagEdgecoreBinary, flag, err)
		}
		return filepath.Abs(p)
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "edgecore")
		if _, err := exec.LookPath(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("edgecore")
	if err != nil {
		return "", fmt.Errorf("edgecore not found next to keadm or in PATH: pass --%s", flagEdgecoreBinary)
	}
	return filepath.Abs(p)
}

// join runs the steps of `keadm join`.
func join(ctx context.Context, d Deps, o joinOptions) error {
	p, err := o.validate()
	if err != nil {
		return err
	}
	if o.KubeEdgeVersion != "" {
		fmt.Fprintf(d.Stderr, "note: --%s=%s is ignored: keadm starts the local edgecore binary\n", flagKubeEdgeVersion, o.KubeEdgeVersion)
	}
	if pid, ok := runningEdgecore(p.paths); ok {
		return fmt.Errorf("edgecore is already running (pid %d, from %s): run `keadm reset` first", pid, p.paths.PIDFile)
	}
	// Certificates from an earlier join may be for another node or cloud;
	// the edge certificate manager would reuse them if they look valid.
	var found []string
	for _, f := range []string{p.paths.Config, p.paths.CAFile, p.paths.CertFile, p.paths.KeyFile} {
		if _, err := os.Lstat(f); err == nil {
			found = append(found, f)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("check for an earlier join: %w", err)
		}
	}
	if len(found) > 0 && !o.Force {
		return fmt.Errorf("an earlier join left %s: run `keadm reset` first, or pass --%s to overwrite",
			strings.Join(found, ", "), flagForce)
	}

	steps := 4
	if o.PrepareOnly {
		steps = 2
	}
	step := 0
	progress := func(format string, args ...any) {
		step++
		fmt.Fprintf(d.Stdout, "[%d/%d] %s\n", step, steps, fmt.Sprintf(format, args...))
	}

	progress("writing configuration to %s", p.paths.Config)
	b, err := config.Marshal(p.config)
	if err != nil {
		return err
	}
	// 0600: the file holds the join token.
	if err := writeFileAtomic(p.paths.Config, b, 0o600); err != nil {
		return fmt.Errorf("write configuration: %w", err)
	}

	hub := p.config.Modules.EdgeHub
	progress("fetching certificates from %s", hub.HTTPServer)
	// Reaching here with certificates on disk means --force: the token now
	// given decides which CA to trust.
	for _, f := range []string{p.paths.CAFile, p.paths.CertFile, p.paths.KeyFile} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove old certificate: %w", err)
		}
	}
	err = d.Bootstrap(ctx, BootstrapRequest{
		Server: hub.HTTPServer, Token: hub.Token, NodeName: p.config.NodeName(),
		CAFile: hub.TLSCAFile, CertFile: hub.TLSCertFile, KeyFile: hub.TLSPrivateKeyFile,
	})
	if err != nil {
		// Leave nothing behind that would make a corrected retry need --force.
		if rmErr := os.Remove(p.paths.Config); rmErr == nil {
			fmt.Fprintf(d.Stderr, "removed %s again\n", p.paths.Config)
		}
		return fmt.Errorf("fetch certificates: %w", err)
	}

	args := []string{"--config", p.paths.Config}
	if o.PrepareOnly {
		bin := p.edgecore
		if bin == "" {
			bin = "edgecore"
		}
		fmt.Fprintf(d.Stdout, "edge node %s is prepared; start edgecore with:\n  %s\n",
			p.config.NodeName(), shellJoin(append([]string{bin}, args...)))
		return nil
	}

	progress("starting %s (log: %s)", p.edgecore, p.paths.LogFile)
	if err := os.MkdirAll(filepath.Dir(p.paths.LogFile), 0o755); err != nil {
		return fmt.Errorf("create log directory: %w", err)
	}
	// Only what this edgecore logs counts: an earlier run's "connected"
	// line must not.
	var logStart int64
	if fi, err := os.Stat(p.paths.LogFile); err == nil {
		logStart = fi.Size()
	}
	proc, err := d.StartEdgecore(EdgecoreSpec{Binary: p.edgecore, Args: args, LogFile: p.paths.LogFile})
	if err != nil {
		return err
	}
	if err := writePIDFile(p.paths.PIDFile, proc.Pid()); err != nil {
		// Without the pid file reset could not find it: do not leave it running.
		_ = syscallKill(proc.Pid())
		return fmt.Errorf("write pid file (edgecore stopped again): %w", err)
	}

	server := hub.WebSocket.Server
	if hub.Quic.Enable {
		server = hub.Quic.Server
	}
	progress("waiting for edgecore (pid %d) to connect to %s", proc.Pid(), server)
	if err := waitConnected(ctx, d, proc, p.paths.LogFile, logStart); err != nil {
		return err
	}
	fmt.Fprintf(d.Stdout, "edge node %s joined\n", p.config.NodeName())
	return nil
}

// runningEdgecore reports an edgecore recorded in the pid file that still runs.
func runningEdgecore(paths layout) (int, bool) {
	b, err := os.ReadFile(paths.PIDFile)
	if err != nil {
		return 0, false
	}
	pid, err := parsePID(b)
	if err != nil {
		return 0, false
	}
	args, running := procArgs(pid)
	return pid, running && isEdgecore(args, paths.Config)
}

// waitConnected waits until edgecore's log, from offset on, has the
// connected message while the process is alive.
func waitConnected(ctx context.Context, d Deps, proc Process, logFile string, offset int64) error {
	var exited error
	connected, err := pollUntil(ctx, d.Clock, connectTimeout, func() bool {
		if exited = proc.Exited(); exited != nil {
			return true
		}
		out, _ := readFrom(logFile, offset)
		// Alive after logging it: a process that connects and dies at once
		// has not joined.
		return bytes.Contains(out, []byte(ConnectedMessage)) && proc.Exited() == nil
	})
	if exited == nil {
		exited = proc.Exited()
	}
	out, _ := readFrom(logFile, offset)
	switch {
	case err != nil:
		return fmt.Errorf("interrupted while waiting for edgecore (pid %d) to connect; it keeps running, `keadm reset` stops it: %w", proc.Pid(), err)
	case exited != nil:
		return fmt.Errorf("%w before connecting; last lines of %s:\n%s", exited, logFile, tail(out, 15))
	case !connected:
		return fmt.Errorf("edgecore (pid %d) did not connect within %s; it keeps running (see %s, `keadm reset` stops it); last lines:\n%s",
			proc.Pid(), connectTimeout, logFile, tail(out, 15))
	}
	return nil
}

// readFrom returns the file's content from offset on, at most 4 MiB.
func readFrom(path string, offset int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(io.NewSectionReader(f, offset, 1<<62), 4<<20))
}

// tail returns the last n lines of b, indented.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 1 && lines[0] == "" {
		return "  (empty)"
	}
	return "  " + strings.Join(lines, "\n  ")
}

// shellJoin quotes args for a POSIX shell where needed.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@", r))
		}) < 0 {
			out[i] = a
		} else {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}
