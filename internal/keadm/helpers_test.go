package keadm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	edgeconfig "github.com/kubeedge-go/kubeedge/internal/edge/config"
	"github.com/kubeedge-go/kubeedge/internal/pki"
)

// fakeEdgecoreMode selects what the fake edgecore does.
const fakeEdgecoreMode = "KEADM_TEST_EDGECORE_MODE"

func TestMain(m *testing.M) {
	// The test binary doubles as edgecore when started through a link
	// named edgecore, so join and reset handle a real detached process.
	if filepath.Base(os.Args[0]) == "edgecore" {
		os.Exit(fakeEdgecore(os.Args[1:]))
	}
	goleak.VerifyTestMain(m)
}

// fakeEdgecore loads its configuration like edgecore and then, by mode,
// reports a connection and runs until SIGTERM ("connect"), fails at once
// ("exit") or runs without connecting ("hang").
func fakeEdgecore(args []string) int {
	if len(args) != 2 || args[0] != "--config" {
		fmt.Println("usage: edgecore --config FILE; got", args)
		return 2
	}
	c, err := edgeconfig.Load(args[1])
	if err != nil {
		fmt.Println("edgecore:", err)
		return 2
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	switch mode := os.Getenv(fakeEdgecoreMode); mode {
	case "connect":
		fmt.Printf("time=2026-01-01T00:00:00Z level=INFO msg=%q server=%s\n", ConnectedMessage, c.Modules.EdgeHub.WebSocket.Server)
	case "exit":
		fmt.Println("edgecore: open database: permission denied")
		return 3
	case "hang":
		fmt.Println("dialing the cloud")
	default:
		fmt.Printf("unknown %s %q\n", fakeEdgecoreMode, mode)
		return 2
	}
	<-term
	return 0
}

// fakeEdgecoreBinary returns a path named edgecore that runs this test
// binary, in mode.
func fakeEdgecoreBinary(t *testing.T, mode string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "edgecore")
	if err := os.Symlink(self, bin); err != nil {
		t.Fatal(err)
	}
	t.Setenv(fakeEdgecoreMode, mode)
	return bin
}

// children records the processes join starts and kills and reaps them
// when the test ends.
type children struct {
	mu    sync.Mutex
	procs []Process // guarded by mu
}

func newChildren(t *testing.T) *children {
	c := &children{}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, p := range c.procs {
			if p.Exited() == nil {
				_ = syscall.Kill(p.Pid(), syscall.SIGKILL)
			}
			waitFor(t, fmt.Sprintf("pid %d to be reaped", p.Pid()), func() bool { return p.Exited() != nil })
		}
	})
	return c
}

func (c *children) start(spec EdgecoreSpec) (Process, error) {
	p, err := startDetached(spec)
	if err == nil {
		c.mu.Lock()
		c.procs = append(c.procs, p)
		c.mu.Unlock()
	}
	return p, err
}

func (c *children) only(t *testing.T) Process {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.procs) != 1 {
		t.Fatalf("started %d processes, want 1", len(c.procs))
	}
	return c.procs[0]
}

// waitFor polls cond until it holds or 20 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type result struct {
	stdout, stderr string
	err            error
}

// run executes keadm with args.
func run(ctx context.Context, d Deps, args ...string) result {
	var out, errOut bytes.Buffer
	d.Stdout, d.Stderr = &out, &errOut
	if d.Stdin == nil {
		d.Stdin = strings.NewReader("")
	}
	cmd := NewCommand(d)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	return result{stdout: out.String(), stderr: errOut.String(), err: err}
}

// mustErr fails unless r failed with an error containing each of want.
func (r result) mustErr(t *testing.T, want ...string) {
	t.Helper()
	if r.err == nil {
		t.Fatalf("succeeded, want an error containing %q; stdout:\n%s", want, r.stdout)
	}
	for _, w := range want {
		if !strings.Contains(r.err.Error(), w) {
			t.Errorf("error %q does not contain %q", r.err, w)
		}
	}
}

func (r result) mustSucceed(t *testing.T) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("failed: %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
	}
}

// testToken returns a well-formed token for a new CA.
func testToken(t *testing.T) (*pki.CA, string) {
	t.Helper()
	ca, err := pki.NewCA(time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := pki.NewToken(ca, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca, tok
}

// fakeBootstrap writes placeholder certificate files and records requests.
type fakeBootstrap struct {
	mu   sync.Mutex
	reqs []BootstrapRequest // guarded by mu
	err  error
}

func (f *fakeBootstrap) bootstrap(_ context.Context, req BootstrapRequest) error {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	for _, p := range []string{req.CAFile, req.CertFile, req.KeyFile} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte("placeholder for "+req.NodeName), 0o600); err != nil {
			return err
		}
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
