package testenv

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestStopDetachedKillsRecordedProcesses(t *testing.T) {
	dir := canonicalTempDir(t)
	etcd := startHelper(t, "etcd", dir, "run")
	api := startHelper(t, "kube-apiserver", dir, "run")
	etcdPID := writePIDFile(t, dir, "etcd", etcd.Process.Pid)
	apiPID := writePIDFile(t, dir, "kube-apiserver", api.Process.Pid)

	if err := StopDetached(dir); err != nil {
		t.Fatalf("StopDetached: %v", err)
	}
	for _, c := range []*exec.Cmd{etcd, api} {
		if pidRunning(c.Process.Pid) {
			t.Errorf("%s (pid %d) still runs after StopDetached", c.Path, c.Process.Pid)
		}
	}
	for _, p := range []string{etcdPID, apiPID} {
		if fileExists(p) {
			t.Errorf("pid file %s not removed", p)
		}
	}
	// Nothing left to stop is not an error.
	if err := StopDetached(dir); err != nil {
		t.Errorf("second StopDetached: %v", err)
	}
}

func TestStopDetachedSparesReusedPIDs(t *testing.T) {
	dir := canonicalTempDir(t)
	// A PID now running another binary, and one running the right binary
	// for another directory: both stand for processes that exited and whose
	// PIDs were reused.
	wrongName := startHelper(t, "etcd", dir, "run")
	wrongDir := startHelper(t, "kube-scheduler", canonicalTempDir(t), "run")
	p1 := writePIDFile(t, dir, "kube-apiserver", wrongName.Process.Pid)
	p2 := writePIDFile(t, dir, "kube-scheduler", wrongDir.Process.Pid)

	if err := StopDetached(dir); err != nil {
		t.Fatalf("StopDetached: %v", err)
	}
	for _, c := range []*exec.Cmd{wrongName, wrongDir} {
		if !pidRunning(c.Process.Pid) {
			t.Errorf("%s (pid %d) was killed although its pid file named another process", c.Path, c.Process.Pid)
		}
	}
	for _, p := range []string{p1, p2} {
		if fileExists(p) {
			t.Errorf("stale pid file %s not removed", p)
		}
	}
}

func TestStopDetachedBadPIDFile(t *testing.T) {
	dir := canonicalTempDir(t)
	if err := os.MkdirAll(filepath.Join(dir, "pids"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pids", "etcd.pid"), []byte("abc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := StopDetached(dir)
	if err == nil || !strings.Contains(err.Error(), `"abc" is not a number`) || !strings.Contains(err.Error(), "etcd.pid") {
		t.Fatalf("StopDetached = %v, want an error naming etcd.pid and its bad content", err)
	}
}

func TestStopDetachedBadRouteFile(t *testing.T) {
	dir := canonicalTempDir(t)
	if err := os.WriteFile(filepath.Join(dir, routeFile), []byte("10.96.0.1/24\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := StopDetached(dir)
	if err == nil || !strings.Contains(err.Error(), "not a network address") {
		t.Fatalf("StopDetached = %v, want an error about the route file", err)
	}
}

func TestKillPIDEscalatesToSIGKILL(t *testing.T) {
	dir := canonicalTempDir(t)
	c := startHelper(t, "etcd", dir, "ignore-term")
	if err := killPID(c.Process.Pid, 200*time.Millisecond); err != nil {
		t.Fatalf("killPID: %v", err)
	}
	if pidRunning(c.Process.Pid) {
		t.Fatal("process ignoring SIGTERM still runs after killPID")
	}
}

func TestPIDRunningTreatsZombieAsGone(t *testing.T) {
	dir := canonicalTempDir(t)
	c := exec.Command(os.Args[0])
	c.Env = append(os.Environ(), helperEnv+"=run")
	c.Args = append(c.Args, "--data-dir="+dir+"/x")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	pid := c.Process.Pid
	if !pidRunning(pid) {
		t.Fatal("pidRunning = false for a running process")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Not reaped yet: a zombie until Wait.
	waitFor(t, 5*time.Second, "killed helper to stop running", func() bool { return !pidRunning(pid) })
	if !fileExists(filepath.Join("/proc", strconv.Itoa(pid))) {
		t.Fatal("expected an unreaped zombie in /proc")
	}
	_ = c.Wait()
}

func TestStartControlPlaneRefusesUsedDir(t *testing.T) {
	binDir := t.TempDir()
	for _, n := range []string{"etcd", "kube-apiserver"} {
		if err := os.WriteFile(filepath.Join(binDir, n), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("foreign files", func(t *testing.T) {
		dir := canonicalTempDir(t)
		if err := os.WriteFile(filepath.Join(dir, "precious.txt"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := StartControlPlane(t.Context(), ControlPlaneOptions{Dir: dir, BinDir: binDir})
		if !errors.Is(err, ErrDirInUse) || !strings.Contains(err.Error(), "holds no control plane files") {
			t.Fatalf("StartControlPlane = %v, want ErrDirInUse for a foreign directory", err)
		}
		if !fileExists(filepath.Join(dir, "precious.txt")) {
			t.Fatal("foreign file removed")
		}
	})
	t.Run("running control plane", func(t *testing.T) {
		dir := canonicalTempDir(t)
		if err := os.WriteFile(filepath.Join(dir, markerFile), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		c := startHelper(t, "etcd", dir, "run")
		writePIDFile(t, dir, "etcd", c.Process.Pid)
		_, err := StartControlPlane(t.Context(), ControlPlaneOptions{Dir: dir, BinDir: binDir})
		if !errors.Is(err, ErrDirInUse) || !strings.Contains(err.Error(), "running processes") {
			t.Fatalf("StartControlPlane = %v, want ErrDirInUse for a running control plane", err)
		}
		if !pidRunning(c.Process.Pid) {
			t.Fatal("running process killed")
		}
	})
}

func TestStartControlPlaneMissingBinaries(t *testing.T) {
	binDir := t.TempDir()
	_, err := StartControlPlane(t.Context(), ControlPlaneOptions{Dir: t.TempDir(), BinDir: binDir, Scheduler: true})
	if !errors.Is(err, ErrMissingBinary) {
		t.Fatalf("StartControlPlane = %v, want ErrMissingBinary", err)
	}
	for _, want := range []string{"etcd", "kube-apiserver", "kube-scheduler", binDir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "kube-controller-manager") {
		t.Errorf("error %q names kube-controller-manager, which was not requested", err)
	}
}

func TestRunningDetachedWithoutProcesses(t *testing.T) {
	ctx := context.Background()
	if ok, err := RunningDetached(ctx, filepath.Join(t.TempDir(), "absent")); ok || err != nil {
		t.Errorf("RunningDetached(absent dir) = %v, %v; want false, nil", ok, err)
	}
	dir := canonicalTempDir(t)
	// A PID that certainly runs something else: our own.
	writePIDFile(t, dir, "etcd", os.Getpid())
	if ok, err := RunningDetached(ctx, dir); ok || err != nil {
		t.Errorf("RunningDetached(stale pid) = %v, %v; want false, nil", ok, err)
	}
}

func TestStopDetachedAbsentDir(t *testing.T) {
	if err := StopDetached(filepath.Join(t.TempDir(), "absent")); err != nil {
		t.Fatalf("StopDetached(absent dir) = %v, want nil: nothing to stop", err)
	}
}

func TestStartControlPlaneReportsEarlyExit(t *testing.T) {
	binDir := t.TempDir()
	scripts := map[string]string{
		"etcd":           "#!/bin/sh\nexec sleep 600\n",
		"kube-apiserver": "#!/bin/sh\necho 'Error: invalid flag --bogus' >&2\nexit 3\n",
	}
	for n, s := range scripts {
		if err := os.WriteFile(filepath.Join(binDir, n), []byte(s), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := canonicalTempDir(t)
	_, err := StartControlPlane(t.Context(), ControlPlaneOptions{Dir: dir, BinDir: binDir,
		Logger: slog.New(slog.NewTextHandler(tWriter{t}, nil))})
	for _, want := range []string{"kube-apiserver exited during start-up", "exit status 3", "Error: invalid flag --bogus"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("StartControlPlane = %v, want an error containing %q", err, want)
		}
	}
	// The failed start cleaned up after itself.
	if fileExists(filepath.Join(dir, routeFile)) {
		t.Error("route file left after a failed start")
	}
	if live, err := livePIDs(dir); err != nil || len(live) != 0 {
		t.Errorf("livePIDs after a failed start = %v, %v", live, err)
	}
}
