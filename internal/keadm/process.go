package keadm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/utils/clock"
)

// Stop timing: edgecore gets stopGrace to shut down after SIGTERM, and the
// kernel killAfter more to remove it after SIGKILL.
const (
	stopGrace    = 10 * time.Second
	killAfter    = 5 * time.Second
	pollInterval = 100 * time.Millisecond
)

// startDetached starts spec in a new session, so that it outlives keadm and
// does not receive the terminal's signals, with stdin from /dev/null and
// stdout and stderr appended to spec.LogFile.
func startDetached(spec EdgecoreSpec) (Process, error) {
	logf, err := os.OpenFile(spec.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open edgecore log: %w", err)
	}
	// The child has its own descriptor after Start.
	defer logf.Close()
	cmd := exec.Command(spec.Binary, spec.Args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Binary, err)
	}
	c := &child{pid: cmd.Process.Pid}
	// Exited reaps by pid with wait4, so the os.Process handle (a pidfd) is
	// not needed. Release does not detach the child: it stays ours to reap
	// until keadm exits and init adopts it.
	if err := cmd.Process.Release(); err != nil {
		return nil, fmt.Errorf("release %s: %w", spec.Binary, err)
	}
	return c, nil
}

// child is a process started by startDetached. It is not safe for concurrent
// use.
type child struct {
	pid  int
	exit error // how it ended, once reaped
}

func (c *child) Pid() int { return c.pid }

// Exited polls with WNOHANG: a goroutine blocked in Wait would outlive a
// successful join, and a zombie child still answers signal 0.
func (c *child) Exited() error {
	if c.exit != nil {
		return c.exit
	}
	var ws syscall.WaitStatus
	got, err := syscall.Wait4(c.pid, &ws, syscall.WNOHANG, nil)
	switch {
	case errors.Is(err, syscall.EINTR):
		return nil
	case err != nil:
		c.exit = fmt.Errorf("edgecore (pid %d) ended; its status is unknown: %w", c.pid, err)
	case got == 0:
		return nil
	case ws.Signaled():
		c.exit = fmt.Errorf("edgecore (pid %d) was killed by signal %v", c.pid, ws.Signal())
	default:
		c.exit = fmt.Errorf("edgecore (pid %d) exited with status %d", c.pid, ws.ExitStatus())
	}
	return c.exit
}

// writePIDFile records pid, replacing any previous file atomically.
func writePIDFile(path string, pid int) error {
	return writeFileAtomic(path, []byte(strconv.Itoa(pid)+"\n"), 0o644)
}

// parsePID parses the content of a pid file.
func parsePID(b []byte) (int, error) {
	s := strings.TrimSpace(string(b))
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%q is not a process id", s)
	}
	return pid, nil
}

// parseProcState returns the state letter from /proc/<pid>/stat. The command
// name in parentheses may itself contain ") ", so the state is found after
// the last ')'.
func parseProcState(stat []byte) (byte, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("no ')' after the command name")
	}
	rest := bytes.TrimLeft(stat[i+1:], " ")
	if len(rest) == 0 {
		return 0, errors.New("no state after the command name")
	}
	return rest[0], nil
}

// procArgs returns the command line of a live process, and false if pid has
// exited or is a zombie (whose command line is empty).
func procArgs(pid int) ([]string, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, false
	}
	if st, err := parseProcState(stat); err != nil || st == 'Z' || st == 'X' {
		return nil, false
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(raw) == 0 {
		return nil, false
	}
	return strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00"), true
}

// isEdgecore says whether args is an edgecore command line: the program's
// name mentions edgecore, or it was given configPath.
func isEdgecore(args []string, configPath string) bool {
	if len(args) == 0 {
		return false
	}
	if strings.Contains(filepath.Base(args[0]), "edgecore") {
		return true
	}
	return slices.Contains(args, configPath) || slices.Contains(args, "--config="+configPath)
}

// stopEdgecore stops the edgecore recorded in pidFile, if it runs, and
// removes the pid file. It reports what it did to say.
func stopEdgecore(ctx context.Context, clk clock.WithTicker, pidFile, configPath string, say func(format string, args ...any)) error {
	b, err := os.ReadFile(pidFile)
	if errors.Is(err, fs.ErrNotExist) {
		say("no %s: no edgecore started by keadm join to stop", pidFile)
		return nil
	}
	if err != nil {
		return fmt.Errorf("read pid file: %w", err)
	}
	pid, err := parsePID(b)
	if err != nil {
		return fmt.Errorf("pid file %s: %w", pidFile, err)
	}
	// On Linux FindProcess holds a pidfd, so the signals below reach the
	// process checked here even if it exits and its pid is reused.
	proc, err := os.FindProcess(pid)
	if err != nil {
		return fmt.Errorf("find edgecore (pid %d): %w", pid, err)
	}
	defer proc.Release()
	args, running := procArgs(pid)
	if running && !isEdgecore(args, configPath) {
		return fmt.Errorf("pid %d from %s is %q, not edgecore: not stopping it (remove %s if it is stale)",
			pid, pidFile, strings.Join(args, " "), pidFile)
	}
	if running {
		if err := terminate(ctx, clk, proc, pid); err != nil {
			return err
		}
		say("stopped edgecore (pid %d)", pid)
	} else {
		say("edgecore (pid %d) is not running", pid)
	}
	if err := os.Remove(pidFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove pid file: %w", err)
	}
	return nil
}

// terminate sends SIGTERM, then SIGKILL if the process outlives stopGrace.
func terminate(ctx context.Context, clk clock.WithTicker, proc *os.Process, pid int) error {
	alive := func() bool {
		if err := proc.Signal(syscall.Signal(0)); err != nil {
			return false
		}
		_, running := procArgs(pid)
		return running
	}
	for _, step := range []struct {
		sig  syscall.Signal
		wait time.Duration
	}{{syscall.SIGTERM, stopGrace}, {syscall.SIGKILL, killAfter}} {
		if err := proc.Signal(step.sig); errors.Is(err, os.ErrProcessDone) {
			return nil
		} else if err != nil {
			return fmt.Errorf("signal edgecore (pid %d): %w", pid, err)
		}
		if done, err := pollUntil(ctx, clk, step.wait, func() bool { return !alive() }); err != nil {
			return fmt.Errorf("waiting for edgecore (pid %d) to stop: %w", pid, err)
		} else if done {
			return nil
		}
	}
	return fmt.Errorf("edgecore (pid %d) is still running %s after SIGKILL", pid, killAfter)
}

// pollUntil calls cond every pollInterval until it returns true (true, nil),
// timeout passes on clk (false, nil) or ctx ends (false, ctx.Err()).
func pollUntil(ctx context.Context, clk clock.WithTicker, timeout time.Duration, cond func() bool) (bool, error) {
	deadline := clk.Now().Add(timeout)
	for {
		if cond() {
			return true, nil
		}
		if !clk.Now().Before(deadline) {
			return false, nil
		}
		t := clk.NewTimer(pollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		case <-t.C():
		}
	}
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory, creating the directory if needed.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly after the rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// syscallKill kills pid outright; used when keadm cannot record it.
func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
