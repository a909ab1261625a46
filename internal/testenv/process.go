package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is one control plane binary started by this process.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string        // path of its log file
	done chan struct{} // closed once the process has exited and been reaped
	err  error         // exit status; written before done is closed
}

// startProcess runs bin with args, its output appended to logPath. A detached
// process gets its own session so that it survives the caller; otherwise the
// kernel kills it when the caller dies, so a crashed test leaves nothing
// behind.
func startProcess(name, bin string, args []string, logPath string, detach bool) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	// The child holds its own descriptor; ours is not needed after Start.
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL once grace has passed, and returns when
// the process has been reaped.
func (p *process) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM) // fails only if it already exited
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// killPID stops a process that is not our child (a detached control plane
// started by an earlier command): SIGTERM, SIGKILL after grace, then waits
// until it is gone or a zombie.
func killPID(pid int, grace time.Duration) error {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return fmt.Errorf("kill %d: %w", pid, err)
	}
	if waitGone(pid, grace) {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %d: %w", pid, err)
	}
	if waitGone(pid, 5*time.Second) {
		return nil
	}
	return fmt.Errorf("process %d still alive 5s after SIGKILL", pid)
}

// waitGone polls until pid no longer runs or timeout passes.
func waitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if !pidRunning(pid) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pidRunning reports whether pid exists and is not a zombie. Zombies count as
// gone: an orphan is reaped by PID 1, which in some containers never happens.
func pidRunning(pid int) bool {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and may
	// itself contain spaces and parentheses.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return false
	}
	state := data[i+2]
	return state != 'Z' && state != 'X'
}

// pidIsOurs reports whether pid runs the binary name with an argument under
// dir, which tells our process apart from an unrelated one that reused a
// stale PID.
func pidIsOurs(pid int, name, dir string) bool {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return false
	}
	return cmdlineMatches(data, name, dir)
}

// cmdlineMatches checks a NUL-separated /proc/<pid>/cmdline: argv[0] must be
// named name and a later argument must mention dir.
func cmdlineMatches(cmdline []byte, name, dir string) bool {
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(args) < 2 || filepath.Base(args[0]) != name {
		return false
	}
	for _, a := range args[1:] {
		if strings.Contains(a, dir+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// parsePID parses the content of a pid file.
func parsePID(data []byte) (int, error) {
	s := strings.TrimSpace(string(data))
	pid, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("pid file: %q is not a number", s)
	}
	if pid <= 1 {
		return 0, fmt.Errorf("pid file: %d is not a valid process id", pid)
	}
	return pid, nil
}

// logTail returns the last lines of a log file, for error messages.
func logTail(path string, lines int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	data = bytes.TrimRight(data, "\n")
	idx := len(data)
	for range lines {
		i := bytes.LastIndexByte(data[:idx], '\n')
		if i < 0 {
			idx = 0
			break
		}
		idx = i
	}
	tail := strings.TrimLeft(string(data[idx:]), "\n")
	// apiserver lines can be long; keep error messages readable.
	const maxBytes = 4096
	if len(tail) > maxBytes {
		tail = "..." + tail[len(tail)-maxBytes:]
	}
	return tail
}
