package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// K8sVersion is the Kubernetes version hack/build-k8s.sh builds.
const K8sVersion = "v1.35.4"

// K8sBinEnv names the environment variable that overrides the directory of the
// control plane binaries.
const K8sBinEnv = "KUBEEDGE_K8S_BIN"

// ErrMissingBinary is returned when a control plane binary is not found.
var ErrMissingBinary = errors.New("testenv: control plane binary missing")

// RepoRoot walks up from dir to the first directory holding a go.mod.
func RepoRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("repo root: %w", err)
	}
	for d := dir; ; {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("repo root: no go.mod in %s or any parent", dir)
		}
		d = parent
	}
}

// DefaultBinDir returns $KUBEEDGE_K8S_BIN if set, else
// <repo root>/_output/k8s/<K8sVersion>/bin with the repo root found from the
// working directory.
func DefaultBinDir() (string, error) {
	if d := os.Getenv(K8sBinEnv); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("default bin dir: %w", err)
	}
	root, err := RepoRoot(wd)
	if err != nil {
		return "", fmt.Errorf("default bin dir (set %s to override): %w", K8sBinEnv, err)
	}
	return filepath.Join(root, "_output", "k8s", K8sVersion, "bin"), nil
}

// checkBinaries returns an error wrapping ErrMissingBinary that names every
// binary of names missing (or not executable) in binDir.
func checkBinaries(binDir string, names ...string) error {
	if missing := missingBinaries(binDir, names...); len(missing) > 0 {
		return fmt.Errorf("%w: %q not found in %s", ErrMissingBinary, missing, binDir)
	}
	return nil
}

func missingBinaries(binDir string, names ...string) []string {
	var missing []string
	for _, n := range names {
		fi, err := os.Stat(filepath.Join(binDir, n))
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			missing = append(missing, n)
		}
	}
	return missing
}
