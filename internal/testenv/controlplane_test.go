package testenv

import (
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestControlPlane(t *testing.T) {
	t.Parallel()
	cp := ControlPlaneForTest(t, ControlPlaneOptions{
		ControllerManager: true, Scheduler: true, NodeMonitorGracePeriod: 40 * time.Second,
	})
	ctx := t.Context()
	c := cp.Client

	v, err := c.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != K8sVersion {
		t.Errorf("server version %s, want %s", v.GitVersion, K8sVersion)
	}

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "testenv-it"}}
	if _, err := c.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"greeting": "hello", "n": "42"}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: ns.Name}, Data: want}
	if _, err := c.CoreV1().ConfigMaps(ns.Name).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := c.CoreV1().ConfigMaps(ns.Name).Get(ctx, "cfg", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got.Data); diff != "" {
		t.Errorf("configmap data (-want +got):\n%s", diff)
	}

	// The "kubernetes" Service gets the first IP of the claimed range, which
	// the serving certificate covers.
	svc, err := c.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ip := firstIP(cp.ServiceCIDR).String(); svc.Spec.ClusterIP != ip {
		t.Errorf("kubernetes service IP %s, want %s (first of %s)", svc.Spec.ClusterIP, ip, cp.ServiceCIDR)
	}
	if os.Geteuid() == 0 {
		if !hasBlackhole(t, cp.ServiceCIDR) {
			t.Errorf("no blackhole route for %s while running as root", cp.ServiceCIDR)
		}
		if !fileExists(filepath.Join(cp.Dir, routeFile)) {
			t.Error("route not recorded in the route file")
		}
	}

	// The scheduler runs: with no nodes it marks a pod unschedulable. The
	// pod can be created at all only because the controller-manager made the
	// default ServiceAccount.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ns.Name},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.invalid/none"}}},
	}
	if _, err := c.CoreV1().Pods(ns.Name).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the scheduler to mark the pod unschedulable", func() bool {
		p, err := c.CoreV1().Pods(ns.Name).Get(ctx, "p", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse &&
				cond.Reason == corev1.PodReasonUnschedulable {
				return true
			}
		}
		return false
	})

	pids := cp.PIDs()
	if len(pids) != 4 {
		t.Fatalf("PIDs() = %v, want 4 processes", pids)
	}
	if err := cp.Stop(); err != nil {
		t.Fatal(err)
	}
	for name, pid := range pids {
		if fileExists(filepath.Join("/proc", strconv.Itoa(pid))) {
			t.Errorf("%s (pid %d) still in /proc after Stop", name, pid)
		}
	}
	// Stop deletes the route file only once the route is gone. (Checking
	// the routing table itself would race with other tests claiming the
	// freed range; TestRemoveBlackhole checks the deletion.)
	if fileExists(filepath.Join(cp.Dir, routeFile)) {
		t.Error("route file left after Stop")
	}
	if err := cp.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestControlPlaneDetached covers what `make up` and `make down` do: a
// detached control plane, found running, then stopped through its pid files.
func TestControlPlaneDetached(t *testing.T) {
	t.Parallel()
	binDir, err := DefaultBinDir()
	if err != nil {
		t.Fatal(err)
	}
	requireBinaries(t, binDir, etcdName, apiServerName)
	dir := canonicalTempDir(t)
	cp, err := StartControlPlane(t.Context(), ControlPlaneOptions{Dir: dir, BinDir: binDir, Detach: true,
		Logger: slog.New(slog.NewTextHandler(tWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })

	ok, err := RunningDetached(t.Context(), dir)
	if err != nil || !ok {
		t.Fatalf("RunningDetached = %v, %v; want true", ok, err)
	}
	pids := cp.PIDs()
	for name, pid := range pids {
		data, err := os.ReadFile(filepath.Join(dir, "pids", name+".pid"))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := parsePID(data); err != nil || got != pid {
			t.Errorf("pid file of %s = %q, want %d", name, data, pid)
		}
	}

	// A second start in the same directory must not disturb the first.
	if _, err := StartControlPlane(t.Context(), ControlPlaneOptions{Dir: dir, BinDir: binDir}); err == nil ||
		!strings.Contains(err.Error(), "running processes") {
		t.Fatalf("second StartControlPlane in %s = %v, want ErrDirInUse", dir, err)
	}

	if err := StopDetached(dir); err != nil {
		t.Fatal(err)
	}
	for name, pid := range pids {
		// Our own children: gone from /proc once the waiting goroutine has
		// reaped them.
		waitFor(t, 10*time.Second, name+" to be reaped", func() bool {
			return !fileExists(filepath.Join("/proc", strconv.Itoa(pid)))
		})
	}
	if fileExists(filepath.Join(dir, routeFile)) {
		t.Error("route file left after StopDetached")
	}
	if ok, err := RunningDetached(t.Context(), dir); ok || err != nil {
		t.Errorf("RunningDetached after StopDetached = %v, %v; want false, nil", ok, err)
	}
	// The directory of a stopped control plane can be reused.
	cp2, err := StartControlPlane(t.Context(), ControlPlaneOptions{Dir: dir, BinDir: binDir,
		Logger: slog.New(slog.NewTextHandler(tWriter{t}, nil))})
	if err != nil {
		t.Fatalf("restart in %s: %v", dir, err)
	}
	if err := cp2.Stop(); err != nil {
		t.Fatal(err)
	}
}
