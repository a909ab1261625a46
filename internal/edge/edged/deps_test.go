package edged

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoKubernetesLinked keeps k8s.io/kubernetes and client-go out of the CRI
// client: it is on edgecore's import path.
func TestNoKubernetesLinked(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH; cannot list dependencies")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "k8s.io/client-go/") || strings.HasPrefix(p, "k8s.io/kubernetes/") {
			t.Errorf("edged depends on %s; edgecore must not link it", p)
		}
	}
	if !strings.Contains(string(out), "k8s.io/api/core/v1") {
		t.Errorf("go list -deps output does not look right (no k8s.io/api/core/v1):\n%s", out)
	}
}
