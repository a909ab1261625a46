package keadm

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
)

// Deps are keadm's collaborators. Zero fields take the real implementation,
// except InstallCRDs, without which `keadm crds install` reports an error.
type Deps struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Logger receives the certificate bootstrap's own logs; nil logs warnings
	// and errors to Stderr.
	Logger *slog.Logger
	// Clock paces the waits for edgecore to connect and to stop.
	Clock clock.WithTicker
	// Version is printed by `keadm version`; empty means the module version
	// recorded in the binary.
	Version string
	// InstallCRDs installs the CRDs cloudcore needs.
	InstallCRDs func(ctx context.Context, restConfig *rest.Config) error
	// NewClient builds the Kubernetes client used by gettoken.
	NewClient func(*rest.Config) (kubernetes.Interface, error)
	// Bootstrap obtains the node certificate; the default is the edge
	// certificate manager's Bootstrap.
	Bootstrap func(ctx context.Context, req BootstrapRequest) error
	// StartEdgecore starts edgecore detached from keadm; the default runs it
	// in a new session with its output appended to spec.LogFile.
	StartEdgecore func(spec EdgecoreSpec) (Process, error)
}

// BootstrapRequest is what certificate bootstrap needs from join.
type BootstrapRequest struct {
	// Server is the cloud's certificate endpoint, https://host:port.
	Server   string
	Token    string
	NodeName string
	CAFile   string
	CertFile string
	KeyFile  string
}

// EdgecoreSpec says how to start edgecore.
type EdgecoreSpec struct {
	Binary string
	Args   []string
	// LogFile receives stdout and stderr; it is appended to, never truncated.
	LogFile string
}

// Process is a started edgecore.
type Process interface {
	Pid() int
	// Exited returns nil while the process runs and otherwise an error that
	// says how it ended. It must not block.
	Exited() error
}

// withDefaults fills the zero fields of d.
func (d Deps) withDefaults() Deps {
	if d.Stdin == nil {
		d.Stdin = os.Stdin
	}
	if d.Stdout == nil {
		d.Stdout = os.Stdout
	}
	if d.Stderr == nil {
		d.Stderr = os.Stderr
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.NewTextHandler(d.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if d.Clock == nil {
		d.Clock = clock.RealClock{}
	}
	if d.NewClient == nil {
		d.NewClient = func(c *rest.Config) (kubernetes.Interface, error) { return kubernetes.NewForConfig(c) }
	}
	if d.Bootstrap == nil {
		d.Bootstrap = d.bootstrapCerts
	}
	if d.StartEdgecore == nil {
		d.StartEdgecore = startDetached
	}
	return d
}

// NewCommand returns the keadm root command. Errors are returned from Execute
// rather than printed, so the caller decides how to report them.
func NewCommand(deps Deps) *cobra.Command {
	d := deps.withDefaults()
	root := &cobra.Command{
		Use:   "keadm",
		Short: "keadm installs and joins KubeEdge nodes",
		Long: "keadm prints the join token on the cloud side (gettoken), joins an edge node to the cloud\n" +
			"(join) and undoes a join (reset).",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(d.Stdin)
	root.SetOut(d.Stdout)
	root.SetErr(d.Stderr)
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(
		newGetTokenCommand(d),
		newJoinCommand(d),
		newResetCommand(d),
		newCRDsCommand(d),
		newStreamCertsCommand(d),
		newVersionCommand(d),
	)
	return root
}

func newVersionCommand(d Deps) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the keadm version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := d.Version
			if v == "" {
				v = "(unknown)"
				if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
					v = bi.Main.Version
				}
			}
			_, err := fmt.Fprintf(d.Stdout, "keadm version %s (%s, %s/%s)\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}
