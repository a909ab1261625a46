package testenv

import (
	"errors"
	"log/slog"
	"os"
	"testing"
)

// ContainerdForTest starts a private containerd for one test with the local
// pause and busybox images imported, and tears everything down (sandboxes,
// shims, cgroups, mounts, bridge, files) when the test ends. Without root or
// the binaries the test is skipped (failed under KUBEEDGE_REQUIRE_ALL=1).
// opts.Dir and opts.Detach are ignored; a nil opts.Logger logs through t.Log.
func ContainerdForTest(t testing.TB, opts ContainerdOptions) *Containerd {
	t.Helper()
	err := ContainerdPreconditions()
	Require(t, err == nil, errString(err))
	dir, err := os.MkdirTemp("", "ke")
	if err != nil {
		t.Fatalf("containerd: %v", err)
	}
	opts.Dir, opts.Detach = dir, false
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(tWriter{t}, nil))
	}
	c, err := StartContainerd(t.Context(), opts)
	if err != nil {
		_ = os.RemoveAll(dir)
		t.Fatalf("start containerd: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stop containerd: %v", err)
		}
		if t.Failed() && os.Getenv("KUBEEDGE_KEEP_TESTENV") == "1" {
			t.Logf("keeping containerd files in %s", dir)
			return
		}
		if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("remove containerd dir: %v", err)
		}
	})
	cache, err := ImageCacheDir()
	if err != nil {
		t.Fatalf("containerd images: %v", err)
	}
	root, err := RepoRoot(".")
	if err != nil {
		t.Fatalf("containerd images: %v", err)
	}
	tars, err := BuildImages(t.Context(), root, cache)
	if err != nil {
		t.Fatalf("containerd images: %v", err)
	}
	if err := c.ImportImages(t.Context(), tars...); err != nil {
		t.Fatalf("containerd images: %v", err)
	}
	return c
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
