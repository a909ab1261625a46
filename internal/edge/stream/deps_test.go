package stream

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoKubernetesLinked keeps client-go and k8s.io/kubernetes out of
// EdgeStream (and the tunnel protocol it uses): it is on edgecore's path.
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
			t.Errorf("edgestream depends on %s; edgecore must not link it", p)
		}
	}
	if !strings.Contains(string(out), "github.com/kubeedge-go/kubeedge/internal/tunnel") {
		t.Errorf("go list -deps output does not look right (no tunnel package):\n%s", out)
	}
}
