package testenv

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRepoRoot(t *testing.T) {
	root := canonicalTempDir(t)
	nested := filepath.Join(root, "a", "b")
	if err := os.MkdirAll(nested, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := RepoRoot(nested); err == nil || !strings.Contains(err.Error(), "no go.mod in "+nested) {
		t.Fatalf("RepoRoot without go.mod = %v, want an error naming %s", err, nested)
	}
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := RepoRoot(nested)
	if err != nil || got != root {
		t.Fatalf("RepoRoot(%s) = %q, %v; want %q", nested, got, err, root)
	}
}

func TestDefaultBinDir(t *testing.T) {
	t.Setenv(K8sBinEnv, "")
	got, err := DefaultBinDir()
	if err != nil {
		t.Fatal(err)
	}
	// This package lives at internal/testenv in the repository.
	wd, _ := os.Getwd()
	want := filepath.Join(filepath.Dir(filepath.Dir(wd)), "_output", "k8s", K8sVersion, "bin")
	if got != want {
		t.Errorf("DefaultBinDir() = %q, want %q", got, want)
	}
	t.Setenv(K8sBinEnv, "/opt/k8s/bin")
	if got, _ := DefaultBinDir(); got != "/opt/k8s/bin" {
		t.Errorf("DefaultBinDir() with %s = %q", K8sBinEnv, got)
	}
}

func TestCheckBinaries(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "etcd"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kube-apiserver"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkBinaries(dir, "etcd"); err != nil {
		t.Errorf("checkBinaries(etcd) = %v", err)
	}
	err := checkBinaries(dir, "etcd", "kube-apiserver", "kubectl")
	if !errors.Is(err, ErrMissingBinary) || !strings.Contains(err.Error(), `["kube-apiserver" "kubectl"] not found in `+dir) {
		t.Errorf("checkBinaries = %v, want ErrMissingBinary naming the non-executable and the absent binary", err)
	}
}
