package integration

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeedge-go/kubeedge/internal/testenv"
)

// podEdge starts an edgecore whose edged runs pods on a private containerd.
func podEdge(t *testing.T, c *cloud, name, tok string) (*edge, *testenv.Containerd) {
	t.Helper()
	cd := testenv.ContainerdForTest(t, testenv.ContainerdOptions{})
	dir, err := os.MkdirTemp("", "kepod")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg := edgeConfig(t, dir, name, c.ports, tok, "websocket")
	ed := &cfg.Modules.Edged
	ed.Enable = true
	ed.RemoteRuntimeEndpoint = cd.Endpoint
	ed.CgroupRoot = cd.CgroupRoot
	ed.RootDirectory = filepath.Join(dir, "edged")
	ed.PodLogsDirectory = filepath.Join(dir, "logs")
	return startEdge(t, cfg), cd
}

func getPod(t *testing.T, c *cloud, ns, name string) (*corev1.Pod, error) {
	t.Helper()
	return c.Client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// TestPodsOnRealContainers: a pod bound to an edge node runs on real
// containers through the whole path — EdgeController, delivery, the edge
// store, edged, containerd — with its configmap, secret and a
// service-account token (from the cloud) mounted; its status, pod IP and
// events reach the API server, the node lists its images, and a graceful
// delete removes the containers and then the pod object.
func TestPodsOnRealContainers(t *testing.T) {
	cp := controlPlane(t)
	c := startCloud(t, cp, freePorts(t))
	ns, node := "pods", "pods-edge"
	mustCreateNS(t, cp.Client, ns)
	e, cd := podEdge(t, c, node, token(t, cp.Client))
	waitFor(t, 30*time.Second, "Ready", func() (bool, error) { return nodeReady(cp.Client, node) })
	mustCreateCM(t, cp.Client, ns, "app-config", "from-configmap")
	mustCreateSecret(t, cp.Client, ns, "app-secret")
	ctx := context.Background()
	grace := int64(5)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name: "app", Image: "localhost/kubeedge/busybox:1", ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", "echo started; exec sleep 3600"},
				Env: []corev1.EnvVar{{Name: "PW", ValueFrom: &corev1.EnvVarSource{
					SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "app-secret"}, Key: "password"}}}},
				VolumeMounts: []corev1.VolumeMount{{Name: "cfg", MountPath: "/cfg"}},
			}},
			Volumes: []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{
				ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"}}}}},
		},
	}
	// The default service account appears once the controller manager made it.
	waitFor(t, 60*time.Second, "the pod to be created", func() (bool, error) {
		_, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		return err == nil || apierrors.IsAlreadyExists(err), err
	})
	var running *corev1.Pod
	waitFor(t, 120*time.Second, "the pod Running and Ready in the API", func() (bool, error) {
		p, err := getPod(t, c, ns, "web")
		if err != nil {
			return false, err
		}
		running = p
		return p.Status.Phase == corev1.PodRunning && podReady(p) && p.Status.PodIP != "", fmt.Errorf("status %+v", p.Status)
	})
	ip, err := netip.ParseAddr(running.Status.PodIP)
	if err != nil || !cd.Subnet.Contains(ip) {
		t.Fatalf("pod IP %q is not on the test bridge %s", running.Status.PodIP, cd.Subnet)
	}
	if cs := running.Status.ContainerStatuses; len(cs) != 1 || cs[0].State.Running == nil || !strings.HasPrefix(cs[0].ContainerID, "containerd://") {
		t.Fatalf("container statuses %+v", cs)
	}

	// Inside the container: the configmap volume, the secret env and the
	// projected service-account token the cloud issued for this pod.
	id, err := e.Edged.ContainerID(ctx, ns, "web", "app", false)
	if err != nil {
		t.Fatal(err)
	}
	execOut := func(cmd ...string) string {
		out, stderr, code, err := e.Edged.Runtime().ExecSync(ctx, id, cmd, 10*time.Second)
		if err != nil || code != 0 {
			t.Fatalf("exec %v: code %d, %v, %s", cmd, code, err, stderr)
		}
		return strings.TrimSpace(string(out))
	}
	if got := execOut("cat", "/cfg/v"); got != "from-configmap" {
		t.Errorf("configmap volume holds %q", got)
	}
	if got := execOut("sh", "-c", "echo $PW"); got != "s3cret" {
		t.Errorf("secret env is %q", got)
	}
	if tok := execOut("cat", "/var/run/secrets/kubernetes.io/serviceaccount/token"); strings.Count(tok, ".") != 2 {
		t.Errorf("service-account token %q is not a JWT", tok)
	}
	if got := execOut("cat", "/var/run/secrets/kubernetes.io/serviceaccount/namespace"); got != ns {
		t.Errorf("namespace file holds %q", got)
	}

	// Events and the node's images reached the API server.
	waitFor(t, 30*time.Second, "a Started event", func() (bool, error) {
		evs, err := c.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=web"})
		if err != nil {
			return false, err
		}
		for _, ev := range evs.Items {
			if ev.Reason == "Started" && ev.Source.Host == node {
				return true, nil
			}
		}
		return false, fmt.Errorf("%d events", len(evs.Items))
	})
	waitFor(t, 60*time.Second, "the node's images", func() (bool, error) {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, img := range n.Status.Images {
			for _, name := range img.Names {
				if strings.Contains(name, "kubeedge/busybox") {
					return true, nil
				}
			}
		}
		return false, fmt.Errorf("images %v", n.Status.Images)
	})

	// A graceful delete: edged stops the container, then the final delete
	// removes the object.
	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the pod object to be gone", func() (bool, error) {
		_, err := getPod(t, c, ns, "web")
		return apierrors.IsNotFound(err), nil
	})
	waitFor(t, 30*time.Second, "the container to be gone", func() (bool, error) {
		_, err := e.Edged.ContainerID(ctx, ns, "web", "app", false)
		return err != nil, nil
	})
}
