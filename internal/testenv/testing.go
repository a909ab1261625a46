package testenv

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"testing"
)

// ControlPlaneForTest starts a control plane for one test and stops it, and
// removes its files, when the test ends. opts.Dir is ignored: the files go to
// a fresh, short directory under the system temp dir (unix socket paths are
// limited to 108 bytes). Without the binaries the test is skipped (failed
// under KUBEEDGE_REQUIRE_ALL=1). A nil opts.Logger logs through t.Log.
func ControlPlaneForTest(t testing.TB, opts ControlPlaneOptions) *ControlPlane {
	t.Helper()
	if opts.BinDir == "" {
		d, err := DefaultBinDir()
		if err != nil {
			t.Fatalf("control plane: %v", err)
		}
		opts.BinDir = d
	}
	requireBinaries(t, opts.BinDir, requiredBinaries(opts)...)
	dir, err := os.MkdirTemp("", "kecp")
	if err != nil {
		t.Fatalf("control plane: %v", err)
	}
	opts.Dir = dir
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(tWriter{t}, nil))
	}
	cp, err := StartControlPlane(t.Context(), opts)
	if err != nil {
		_ = os.RemoveAll(dir)
		t.Fatalf("start control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Errorf("stop control plane: %v", err)
		}
		if t.Failed() && os.Getenv("KUBEEDGE_KEEP_TESTENV") == "1" {
			t.Logf("keeping control plane files in %s", dir)
			return
		}
		if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("remove control plane dir: %v", err)
		}
	})
	return cp
}

// requireBinaries skips (or fails, see Require) the test unless binDir holds
// the named binaries.
func requireBinaries(t testing.TB, binDir string, names ...string) {
	t.Helper()
	missing := missingBinaries(binDir, names...)
	Require(t, len(missing) == 0, fmt.Sprintf(
		"control plane binaries %q not found in %s: run `make k8s` or hack/build-k8s.sh", missing, binDir))
}

// tWriter sends slog output to the test log.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}
