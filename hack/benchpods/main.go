// Command benchpods measures apps at the edge on a running `make up`, end
// to end through the real apiserver (scheduler included), cloudcore,
// edgecore and containerd:
//
//   - pod create → Running in the API, p50/p99 over N sequential pods;
//   - a burst of M pods until all are Running;
//   - edgecore's RSS with 0, 10 and M pods;
//   - offline recovery: cloudcore stopped, edgecore and containerd (with
//     every container) killed, edgecore started again with the cloud down;
//     the time until all M pods run again on new containers.
//
// During the burst it also reports the CPU time of each process (by name)
// and of the whole machine, to show where the time goes.
//
// Usage: go run ./hack/benchpods [-seq 20] [-burst 30] [-skip-offline]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubeedge-go/kubeedge/internal/edge/cri"
	"github.com/kubeedge-go/kubeedge/internal/testenv"
)

const ns = "bench-pods"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "benchpods:", err)
		os.Exit(1)
	}
}

type paths struct{ local, kubeconfig, edgePID, cloudPID, containerd string }

func run(ctx context.Context) error {
	root, err := testenv.RepoRoot(".")
	if err != nil {
		return err
	}
	local := filepath.Join(root, "_output", "local")
	p := paths{local: local, kubeconfig: filepath.Join(local, "cluster", "admin.kubeconfig"),
		edgePID: filepath.Join(local, "edge", "edgecore.pid"), cloudPID: filepath.Join(local, "cloud", "cloudcore.pid"),
		containerd: filepath.Join(local, "containerd")}
	seq := flag.Int("seq", 20, "sequential pods")
	burst := flag.Int("burst", 30, "pods in the burst")
	skipOffline := flag.Bool("skip-offline", false, "skip the offline recovery measurement")
	node := flag.String("node", "edge-node", "edge node")
	flag.Parse()

	rc, err := clientcmd.BuildConfigFromFlags("", p.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig (is make up running?): %w", err)
	}
	rc.QPS, rc.Burst = 100, 200
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	_ = client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	if err := waitFor(ctx, 120*time.Second, "the old namespace to go", func() bool {
		_, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}); err != nil {
		return err
	}
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if err := waitFor(ctx, 60*time.Second, "the default service account", func() bool {
		_, err := client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	}); err != nil {
		return err
	}
	rss := func(label string) {
		pid, err := readPID(p.edgePID)
		if err != nil {
			fmt.Printf("edgecore RSS %s: %v\n", label, err)
			return
		}
		kb, err := vmRSS(pid)
		fmt.Printf("edgecore RSS %s: %.1f MiB (%v)\n", label, float64(kb)/1024, err)
	}
	time.Sleep(5 * time.Second) // let edgecore settle before reading its idle RSS
	rss("with 0 bench pods")

	// Sequential: create, wait Running, next.
	var lat []time.Duration
	for i := range *seq {
		name := fmt.Sprintf("seq-%d", i)
		start := time.Now()
		if err := createPod(ctx, client, name, *node); err != nil {
			return err
		}
		if err := waitRunning(ctx, client, []string{name}); err != nil {
			return err
		}
		lat = append(lat, time.Since(start))
		if len(lat) == 10 && *seq > 10 {
			rss("with 10 pods")
		}
	}
	slices.Sort(lat)
	fmt.Printf("pod create → Running in the API, %d sequential pods: p50 %s, p99 %s, min %s, max %s\n",
		len(lat), pct(lat, 50), pct(lat, 99), lat[0].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	if len(lat) >= 10 {
		time.Sleep(3 * time.Second)
		rss(fmt.Sprintf("with %d pods", len(lat)))
	}
	if err := deleteAll(ctx, client); err != nil {
		return err
	}
	// The API forgets a pod deleted with grace 0 at once, while the edge
	// still stops its containers and tears down its sandbox and netns: let
	// that finish, so that the burst does not share the CPU with it.
	if err := waitSandboxesGone(ctx, p); err != nil {
		return err
	}
	// The kernel frees their network namespaces later still.
	waitQuiet(ctx, 30*time.Second)

	// Burst.
	names := make([]string, *burst)
	cpuBefore := takeCPUSnapshot()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, *burst)
	for i := range *burst {
		names[i] = fmt.Sprintf("burst-%d", i)
		wg.Go(func() { errs <- createPod(ctx, client, names[i], *node) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	if err := waitRunning(ctx, client, names); err != nil {
		return err
	}
	fmt.Printf("burst of %d pods until all Running in the API: %s\n", *burst, time.Since(start).Round(time.Millisecond))
	printCPU("the burst", cpuBefore, takeCPUSnapshot())
	time.Sleep(3 * time.Second)
	rss(fmt.Sprintf("with %d pods", *burst))

	if !*skipOffline {
		if err := offline(ctx, p, *burst); err != nil {
			return err
		}
	}
	return deleteAll(ctx, client)
}

// offline stops cloudcore, kills edgecore and containerd with every
// container, starts containerd and then edgecore again, and measures until
// want bench pods run again; then starts cloudcore again.
func offline(ctx context.Context, p paths, want int) error {
	cloudPID, err := readPID(p.cloudPID)
	if err != nil {
		return err
	}
	cloudArgs, err := cmdline(cloudPID)
	if err != nil {
		return err
	}
	edgePID, err := readPID(p.edgePID)
	if err != nil {
		return err
	}
	edgeArgs, err := cmdline(edgePID)
	if err != nil {
		return err
	}
	cd, rt, err := dialEdgeRuntime(ctx, p)
	if err != nil {
		return err
	}
	defer rt.Close()
	before := map[string]bool{}
	cs, err := rt.ListContainers(ctx, &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"io.kubernetes.pod.namespace": ns}})
	if err != nil {
		return err
	}
	for _, c := range cs {
		before[c.Id] = true
	}
	fmt.Println("offline: stopping cloudcore, killing edgecore, containerd and its containers")
	_ = syscall.Kill(cloudPID, syscall.SIGTERM)
	_ = syscall.Kill(edgePID, syscall.SIGKILL)
	if err := waitFor(ctx, 30*time.Second, "edgecore and cloudcore to exit", func() bool { return gone(edgePID) && gone(cloudPID) }); err != nil {
		return err
	}
	if err := cd.StopDaemon(true); err != nil {
		return err
	}
	if err := cd.StartDaemon(ctx); err != nil {
		return err
	}
	start := time.Now()
	edge, err := startDetached(edgeArgs, filepath.Join(p.local, "edge", "edgecore.log"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(p.edgePID, []byte(strconv.Itoa(edge)+"\n"), 0o644); err != nil {
		return err
	}
	err = waitFor(ctx, 5*time.Minute, "the pods to run again", func() bool {
		cs, err := rt.ListContainers(ctx, &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"io.kubernetes.pod.namespace": ns}})
		if err != nil {
			return false
		}
		n := 0
		for _, c := range cs {
			if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING && !before[c.Id] {
				n++
			}
		}
		return n >= want
	})
	if err != nil {
		return err
	}
	fmt.Printf("offline recovery: %d pods running again %s after edgecore started (cloud down)\n", want, time.Since(start).Round(time.Millisecond))
	cloud, err := startDetached(cloudArgs, filepath.Join(p.local, "cloud", "cloudcore.log"))
	if err != nil {
		return err
	}
	return os.WriteFile(p.cloudPID, []byte(strconv.Itoa(cloud)+"\n"), 0o644)
}

func startDetached(args []string, logPath string) (int, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	return pid, nil
}

func createPod(ctx context.Context, client kubernetes.Interface, name, node string) error {
	zero := int64(0)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "bench"}},
		Spec: corev1.PodSpec{
			NodeSelector:                  map[string]string{"kubernetes.io/hostname": node, "node-role.kubernetes.io/edge": ""},
			TerminationGracePeriodSeconds: &zero,
			Containers: []corev1.Container{{Name: "app", Image: testenv.BusyboxImage,
				ImagePullPolicy: corev1.PullIfNotPresent, Command: []string{"sleep", "86400"}}},
		},
	}
	_, err := client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create pod %s: %w", name, err)
	}
	return nil
}

// waitRunning watches the bench pods until every one of names is Running.
// A watch, not polling: listing 30 pods every few milliseconds would take
// CPU from the apiserver and the edge being measured.
func waitRunning(ctx context.Context, client kubernetes.Interface, names []string) error {
	pending := map[string]bool{}
	for _, n := range names {
		pending[n] = true
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for {
		l, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("waiting for %d pods Running: %w", len(names), err)
		}
		for _, p := range l.Items {
			if p.Status.Phase == corev1.PodRunning {
				delete(pending, p.Name)
			}
		}
		if len(pending) == 0 {
			return nil
		}
		w, err := client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: l.ResourceVersion})
		if err != nil {
			return fmt.Errorf("waiting for %d pods Running: %w", len(names), err)
		}
		for ev := range w.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok && p.Status.Phase == corev1.PodRunning {
				delete(pending, p.Name)
			}
			if len(pending) == 0 {
				w.Stop()
				return nil
			}
		}
		w.Stop() // the watch ended (timeout, compaction): list and watch again
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("waiting for %d pods Running: %d still pending: %w", len(names), len(pending), err)
		}
	}
}

func deleteAll(ctx context.Context, client kubernetes.Interface) error {
	zero := int64(0)
	if err := client.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{}); err != nil {
		return err
	}
	return waitFor(ctx, 5*time.Minute, "the bench pods to be gone", func() bool {
		l, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(l.Items) == 0
	})
}

// dialEdgeRuntime finds make up's containerd and connects to its CRI.
func dialEdgeRuntime(ctx context.Context, p paths) (*testenv.Containerd, *cri.Client, error) {
	cd, err := testenv.RunningContainerd(ctx, p.containerd)
	if err != nil || cd == nil {
		return nil, nil, fmt.Errorf("containerd of make up not running (%v)", err)
	}
	rt, err := cri.Dial(cd.Endpoint, cri.Options{Timeout: 30 * time.Second})
	return cd, rt, err
}

// waitSandboxesGone waits until the edge's containerd holds no sandbox of
// the bench namespace.
func waitSandboxesGone(ctx context.Context, p paths) error {
	_, rt, err := dialEdgeRuntime(ctx, p)
	if err != nil {
		return err
	}
	defer rt.Close()
	return waitFor(ctx, 2*time.Minute, "the edge to remove the bench sandboxes", func() bool {
		sbs, err := rt.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"io.kubernetes.pod.namespace": ns}})
		return err == nil && len(sbs) == 0
	})
}

// waitFor polls cond every 20 ms: the resolution of the latencies measured.
func waitFor(ctx context.Context, d time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", d, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	i = min(max(i-1, 0), len(sorted)-1)
	return sorted[i].Round(time.Millisecond)
}

func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func cmdline(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, errors.New("empty command line")
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00"), nil
}

func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && (b[i+2] == 'Z' || b[i+2] == 'X')
}

func vmRSS(pid int) (int64, error) { return testenv.ProcStatusKiB(pid, "VmRSS") }
