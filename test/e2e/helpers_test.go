package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubeedge-go/kubeedge/internal/testenv"
)

// tools are the executables the test drives.
type tools struct {
	cloudcore, edgecore, keadm, kubectl string
}

// findTools locates the project's binaries in <repo>/_output/bin and kubectl
// next to the control plane binaries, skipping (failing in CI) without them.
func findTools(t *testing.T) tools {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := testenv.RepoRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "_output", "bin")
	tl := tools{
		cloudcore: filepath.Join(bin, "cloudcore"),
		edgecore:  filepath.Join(bin, "edgecore"),
		keadm:     filepath.Join(bin, "keadm"),
	}
	var missing []string
	for _, p := range []string{tl.cloudcore, tl.edgecore, tl.keadm} {
		if !executable(p) {
			missing = append(missing, filepath.Base(p))
		}
	}
	testenv.Require(t, len(missing) == 0,
		fmt.Sprintf("binaries not built (%s missing in %s): run make build", strings.Join(missing, ", "), bin))
	k8sBin, err := testenv.DefaultBinDir()
	if err != nil {
		t.Fatal(err)
	}
	tl.kubectl = filepath.Join(k8sBin, "kubectl")
	testenv.Require(t, executable(tl.kubectl), fmt.Sprintf("kubectl not found in %s: run make k8s", k8sBin))
	return tl
}

func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode().Perm()&0o111 != 0
}

// ports are one cloudcore's listening ports.
type ports struct{ ws, quic, https int }

// freePorts picks three ports on 127.0.0.1 that are free for TCP and for UDP
// (the QUIC listener is UDP). The probes stay open until all are chosen so
// that the three differ.
func freePorts(t *testing.T) ports {
	t.Helper()
	var ps []int
	var closers []func() error
	defer func() {
		for _, c := range closers {
			_ = c()
		}
	}()
	for len(ps) < 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closers = append(closers, l.Close)
		p := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue // taken for UDP: try another
		}
		closers = append(closers, u.Close)
		ps = append(ps, p)
	}
	return ports{ws: ps[0], quic: ps[1], https: ps[2]}
}

// started is a process the test started (directly or through keadm), kept
// to check at the end that none is left running.
type started struct {
	pid  int
	args []string
}

// env is the state one end-to-end test keeps about its processes. It is used
// from the test goroutine only.
type env struct {
	t       *testing.T
	tools   tools
	work    string // the test's temporary directory
	begin   time.Time
	last    time.Time // when the previous step began
	started []started
	// children are the long-running processes started by start.
	children []*child
	// logs are shown (their last lines) when the test fails.
	logs []string
}

func newEnv(t *testing.T, tl tools) *env {
	e := &env{t: t, tools: tl, begin: time.Now()}
	e.last = e.begin
	// Created first, so that it is removed only after the logs are shown.
	e.work = t.TempDir()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, l := range e.logs {
			t.Logf("last lines of %s:\n%s", l, tail(l, 60))
		}
	})
	return e
}

// step logs the start of a step with the time since the test began and the
// length of the previous step.
func (e *env) step(format string, args ...any) {
	now := time.Now()
	e.t.Logf("[%6.2fs, previous step %5.2fs] %s", now.Sub(e.begin).Seconds(), now.Sub(e.last).Seconds(),
		fmt.Sprintf(format, args...))
	e.last = now
}

// showLog adds a log file to those shown on failure.
func (e *env) showLog(path string) {
	for _, l := range e.logs {
		if l == path {
			return
		}
	}
	e.logs = append(e.logs, path)
}

// run runs a command to completion within timeout and returns its standard
// output and error separately.
func (e *env) run(timeout time.Duration, bin string, args ...string) (stdout, stderr string, err error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("start %s: %v", bin, err)
	}
	e.started = append(e.started, started{pid: cmd.Process.Pid, args: cmd.Args})
	err = cmd.Wait()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s %s did not finish within %s: %w", filepath.Base(bin), strings.Join(args, " "), timeout, err)
	}
	return out.String(), errOut.String(), err
}

// child is a long-running process started by the test.
type child struct {
	name string
	log  string
	cmd  *exec.Cmd
	// wantRunning is false once the test stops the process on purpose;
	// written by the test goroutine only.
	wantRunning bool
	done        chan struct{} // closed once the process is reaped
	err         error         // its exit status; written before done is closed
}

// start runs bin in its own process group with stdout and stderr appended to
// logPath. The kernel kills it if the test binary dies, and clean-up kills
// its group if the test ends first.
func (e *env) start(name, logPath, bin string, args ...string) *child {
	e.t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		e.t.Fatal(err)
	}
	// The child has its own descriptor once started.
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("start %s: %v", name, err)
	}
	c := &child{name: name, log: logPath, cmd: cmd, wantRunning: true, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	e.started = append(e.started, started{pid: cmd.Process.Pid, args: cmd.Args})
	e.children = append(e.children, c)
	e.showLog(logPath)
	e.t.Cleanup(c.kill)
	return c
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// kill ends the process group at once and waits for the process; for
// clean-up. A reaped leader's group is left alone: its id may be reused.
func (c *child) kill() {
	if c.exited() {
		return
	}
	_ = syscall.Kill(-c.pid(), syscall.SIGKILL)
	<-c.done
}

// stop sends SIGTERM and returns how the process exited; it fails the test
// (after SIGKILL) if the process outlives grace.
func (e *env) stop(c *child, grace time.Duration) error {
	e.t.Helper()
	c.wantRunning = false
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-c.done:
		return c.err
	case <-timer.C:
		c.kill()
		e.t.Fatalf("%s (pid %d) did not exit within %s of SIGTERM; killed it", c.name, c.pid(), grace)
		return nil
	}
}

// waitExit waits until c, stopped by someone else, has exited and returns how.
func (e *env) waitExit(c *child, timeout time.Duration) error {
	e.t.Helper()
	c.wantRunning = false
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-c.done:
		return c.err
	case <-timer.C:
		e.t.Fatalf("%s (pid %d) still runs %s later", c.name, c.pid(), timeout)
		return nil
	}
}

// checkChildren fails the test if a child the test did not stop has exited.
func (e *env) checkChildren() {
	e.t.Helper()
	for _, c := range e.children {
		if c.wantRunning && c.exited() {
			e.t.Fatalf("%s (pid %d) exited unexpectedly (%v); last lines of %s:\n%s",
				c.name, c.pid(), c.err, c.log, tail(c.log, 30))
		}
	}
}

// waitFor polls cond every 100 ms until it is true, a child has died, or d
// has passed; the last error cond returned is reported on timeout.
func (e *env) waitFor(d time.Duration, what string, cond func() (bool, error)) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		e.checkChildren()
		ok, err := cond()
		if ok {
			return
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %s waiting for %s (last: %v)", d, what, last)
		}
		select {
		case <-tick.C:
		case <-e.t.Context().Done():
			e.t.Fatalf("test ended while waiting for %s", what)
		}
	}
}

// running reports whether pid runs the command line args. A pid that is
// gone, a zombie (this sandbox's init may never reap orphans), or reused by
// another program does not.
func running(pid int, args []string) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and may
	// itself contain them.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return false
	}
	if s := stat[i+2]; s == 'Z' || s == 'X' {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	return string(cmdline) == strings.Join(args, "\x00")+"\x00"
}

// cmdline returns the arguments pid runs with.
func cmdline(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("pid %d has an empty command line (a zombie?)", pid)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00"), nil
}

// readPID reads a pid file.
func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("pid file %s holds %q, not a process id", path, b)
	}
	return pid, nil
}

// countFrom counts the lines of path from byte offset on that contain s.
func countFrom(path string, offset int64, s string) int {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return 0
	}
	n := 0
	for line := range bytes.Lines(b[offset:]) {
		if bytes.Contains(line, []byte(s)) {
			n++
		}
	}
	return n
}

// size returns the length of a file, 0 if it does not exist.
func size(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// tail returns the last n lines of a file, indented.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "  (no such file)"
	}
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// exitCode returns the exit status in err, or -1 if err is not an exit.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// remaining lists the files left under dir; none if dir is gone.
func remaining(t *testing.T, dir string) []string {
	t.Helper()
	var left []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			left = append(left, p)
		}
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return left
}
