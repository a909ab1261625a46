package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// startHelper runs this test binary under the name of a control plane binary
// (through a symlink, so that /proc/<pid>/cmdline shows that name) with an
// argument under dir, as the real binaries have. The process is killed and
// reaped when the test ends.
func startHelper(t *testing.T, name, dir, mode string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	binDir := filepath.Join(t.TempDir(), "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(binDir, name)
	if err := os.Symlink(self, link); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(link, "--data-dir="+filepath.Join(dir, "data"))
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(waited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-waited
	})
	// Until the exec has happened, cmdline shows the parent's arguments.
	waitFor(t, 5*time.Second, "helper "+name+" exec'd", func() bool {
		return pidIsOurs(cmd.Process.Pid, name, dir)
	})
	return cmd
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func writePIDFile(t *testing.T, dir, name string, pid int) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "pids"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pids", name+".pid")
	if err := os.WriteFile(path, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// canonicalTempDir is t.TempDir in the form StartControlPlane uses.
func canonicalTempDir(t *testing.T) string {
	t.Helper()
	d, err := canonicalDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
