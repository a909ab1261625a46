package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	cloudconfig "github.com/kubeedge-go/kubeedge/internal/cloud/config"
	edgeconfig "github.com/kubeedge-go/kubeedge/internal/edge/config"
	"github.com/kubeedge-go/kubeedge/internal/pki"
	"github.com/kubeedge-go/kubeedge/internal/store"
	"github.com/kubeedge-go/kubeedge/internal/testenv"
)

// What users see and rely on; spelled out rather than imported, so that a
// change to any of them breaks this test.
const (
	edgeRoleLabel    = "node-role.kubernetes.io/edge"
	syncNodeLabel    = "reliablesyncs.kubeedge.io/node"
	connectedMessage = "connected to cloud"
	cloudReady       = "cloudcore ready"
)

var objectSyncs = schema.GroupVersionResource{Group: "reliablesyncs.kubeedge.io", Version: "v1alpha1", Resource: "objectsyncs"}

// TestBinariesEndToEnd drives the built binaries as a user would: a
// cloudcore configured from its --defaultconfig, keadm gettoken and join
// (which starts edgecore), kubectl, a pod and configmap reaching the edge's
// database, edgecore and cloudcore restarts, and keadm reset.
func TestBinariesEndToEnd(t *testing.T) {
	tl := findTools(t)
	e := newEnv(t, tl)
	const (
		node = "e2e-node" // the control plane is this test's own, so the name is unique in it
		ns   = "e2e"
	)
	work := e.work

	e.step("cloudcore refuses invalid configuration files")
	defaultConfig := checkInvalidCloudConfigs(t, e, work)

	e.step("control plane")
	cp := testenv.ControlPlaneForTest(t, testenv.ControlPlaneOptions{
		ControllerManager: true, NodeMonitorGracePeriod: 20 * time.Second,
	})
	dyn, err := dynamic.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	e.step("cloudcore")
	p := freePorts(t)
	cloudConfig := writeCloudConfig(t, defaultConfig, filepath.Join(work, "cloudcore.yaml"), cp.Kubeconfig, p)
	cloud := e.start("cloudcore", filepath.Join(work, "cloudcore-1.log"), tl.cloudcore, "--config", cloudConfig)
	e.waitFor(60*time.Second, "cloudcore to log "+strconv.Quote(cloudReady), func() (bool, error) {
		return countFrom(cloud.log, 0, cloudReady) > 0, nil
	})

	e.step("keadm gettoken")
	var token string
	e.waitFor(30*time.Second, "keadm gettoken to print the join token", func() (bool, error) {
		out, errOut, err := e.run(20*time.Second, tl.keadm, "gettoken", "--kube-config", cp.Kubeconfig)
		if err != nil {
			return false, fmt.Errorf("%w: %s", err, strings.TrimSpace(errOut))
		}
		token = strings.TrimSpace(out)
		return token != "", nil
	})
	caHash, _, err := pki.ParseToken(token)
	if err != nil {
		t.Fatalf("keadm gettoken printed %q: %v", token, err)
	}

	edgeDir := filepath.Join(work, "edge")
	edgeConfig := filepath.Join(edgeDir, "edgecore.yaml")
	edgeLog := filepath.Join(edgeDir, "edgecore.log")
	pidFile := filepath.Join(edgeDir, "edgecore.pid")
	e.showLog(edgeLog)
	joinArgs := func(token string) []string {
		return []string{"join",
			fmt.Sprintf("--cloudcore-ipport=127.0.0.1:%d", p.ws),
			fmt.Sprintf("--certport=%d", p.https),
			fmt.Sprintf("--quicport=%d", p.quic),
			"--token=" + token,
			"--edgenode-name=" + node,
			"--node-ip=127.0.0.1",
			"--data-dir=" + edgeDir,
			"--config=" + edgeConfig,
			"--edgecore-binary=" + tl.edgecore,
			// Loopback ports of their own: the defaults may be taken by a
			// running `make up` or another test.
			"--set", "modules.metaManager.metaServer.server=127.0.0.1:0",
			"--set", "modules.eventBus.mqttServerInternal=tcp://127.0.0.1:0",
		}
	}

	e.step("keadm join with a token not signed by this cloud fails")
	// Same CA hash, so the edge trusts the cloud and the cloud is the one
	// that refuses.
	jwt, err := pki.NewJWT([]byte("not this cloud's CA key"), time.Now(), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, err := e.run(60*time.Second, tl.keadm, joinArgs(caHash+"."+jwt)...)
	if code := exitCode(err); code <= 0 {
		t.Fatalf("keadm join with a forged token: exit code %d (%v), want a failure; output:\n%s%s", code, err, out, errOut)
	}
	for _, want := range []string{"401 Unauthorized", "token signature does not verify"} {
		if !strings.Contains(out+errOut, want) {
			t.Errorf("keadm join with a forged token: output does not contain %q (the cloud's reason):\n%s%s", want, out, errOut)
		}
	}
	if left := remaining(t, edgeDir); len(left) > 0 {
		t.Fatalf("keadm join with a forged token left files behind: %q", left)
	}

	e.step("keadm join")
	// No --force: the failed join must not have left anything in the way.
	out, errOut, err = e.run(90*time.Second, tl.keadm, joinArgs(token)...)
	if err != nil {
		t.Fatalf("keadm join: %v; output:\n%s%s", err, out, errOut)
	}
	if want := "edge node " + node + " joined"; !strings.Contains(out, want) {
		t.Fatalf("keadm join output does not say %q:\n%s", want, out)
	}
	joined := trackEdgecore(t, e, pidFile, edgeConfig)

	e.step("node %s Ready with the edge label; kubectl agrees", node)
	e.waitFor(30*time.Second, "node "+node+" Ready", func() (bool, error) { return nodeReady(ctx, cp.Client, node) })
	checkKubectlNodes(t, e, cp.Kubeconfig, node)

	e.step("a pod bound to %s and its configmap reach the edge", node)
	createObjects(t, e, cp.Client, ns, node)
	e.waitFor(30*time.Second, "ObjectSync records for the pod and configmap at their current versions", func() (bool, error) {
		want, err := apiVersions(ctx, cp.Client, ns)
		if err != nil {
			return false, err
		}
		got, err := syncRecords(ctx, dyn, ns, node)
		if err != nil {
			return false, err
		}
		return cmp.Equal(want, got), fmt.Errorf("ObjectSync records differ (-api +records):\n%s", cmp.Diff(want, got))
	})

	e.step("stop edgecore (SIGTERM) and read its database")
	if err := syscall.Kill(joined.pid, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM edgecore (pid %d): %v", joined.pid, err)
	}
	e.waitFor(15*time.Second, "edgecore to exit after SIGTERM", func() (bool, error) {
		return !running(joined.pid, joined.args), nil
	})
	checkEdgeDatabase(t, cp.Client, edgeConfig, ns, node)

	e.step("edgecore --config, started by hand")
	offset := size(edgeLog)
	edge := e.start("edgecore", edgeLog, tl.edgecore, "--config", edgeConfig)
	// As a service manager would, so that keadm reset finds it.
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(edge.pid())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.waitFor(30*time.Second, "edgecore to connect and the node to be Ready", func() (bool, error) {
		if n := countFrom(edgeLog, offset, connectedMessage); n < 1 {
			return false, fmt.Errorf("edgecore has not logged %q", connectedMessage)
		}
		return nodeReady(ctx, cp.Client, node)
	})

	e.step("restart cloudcore on the same ports")
	if err := e.stop(cloud, 15*time.Second); err != nil {
		t.Fatalf("cloudcore did not exit cleanly on SIGTERM: %v", err)
	}
	cloud = e.start("cloudcore (restarted)", filepath.Join(work, "cloudcore-2.log"), tl.cloudcore, "--config", cloudConfig)
	e.waitFor(60*time.Second, "the restarted cloudcore to log "+strconv.Quote(cloudReady), func() (bool, error) {
		return countFrom(cloud.log, 0, cloudReady) > 0, nil
	})
	e.waitFor(45*time.Second, "edgecore to reconnect and the node to be Ready", func() (bool, error) {
		if n := countFrom(edgeLog, offset, connectedMessage); n < 2 {
			return false, fmt.Errorf("edgecore logged %q %d times since it started, want 2", connectedMessage, n)
		}
		return nodeReady(ctx, cp.Client, node)
	})
	// The restarted cloudcore delivers: an update reaches the edge.
	cm, err := cp.Client.CoreV1().ConfigMaps(ns).Get(ctx, "e2e-cm", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["greeting"] = "hello again"
	if _, err := cp.Client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitFor(30*time.Second, "the updated configmap's ObjectSync record", func() (bool, error) {
		want, err := apiVersions(ctx, cp.Client, ns)
		if err != nil {
			return false, err
		}
		got, err := syncRecords(ctx, dyn, ns, node)
		if err != nil {
			return false, err
		}
		return cmp.Equal(want, got), fmt.Errorf("ObjectSync records differ (-api +records):\n%s", cmp.Diff(want, got))
	})

	e.step("keadm reset")
	out, errOut, err = e.run(30*time.Second, tl.keadm, "reset", "--force", "--data-dir="+edgeDir, "--config="+edgeConfig)
	if err != nil {
		t.Fatalf("keadm reset: %v; output:\n%s%s", err, out, errOut)
	}
	for _, want := range []string{fmt.Sprintf("stopped edgecore (pid %d)", edge.pid()), "reset complete"} {
		if !strings.Contains(out, want) {
			t.Errorf("keadm reset output does not contain %q:\n%s", want, out)
		}
	}
	if err := e.waitExit(edge, 5*time.Second); err != nil {
		t.Errorf("edgecore did not exit cleanly when keadm reset stopped it: %v", err)
	}
	if left := remaining(t, edgeDir); len(left) > 0 {
		t.Errorf("keadm reset left files behind: %q", left)
	}

	e.step("stop cloudcore")
	if err := e.stop(cloud, 15*time.Second); err != nil {
		t.Errorf("cloudcore did not exit cleanly on SIGTERM: %v", err)
	}
	for _, s := range e.started {
		if running(s.pid, s.args) {
			t.Errorf("pid %d (%s) still runs", s.pid, strings.Join(s.args, " "))
		}
	}
	e.step("done")
}

// checkInvalidCloudConfigs checks that cloudcore refuses bad files, naming
// the fields, and returns its --defaultconfig output.
func checkInvalidCloudConfigs(t *testing.T, e *env, dir string) []byte {
	t.Helper()
	out, errOut, err := e.run(20*time.Second, e.tools.cloudcore, "--defaultconfig")
	if err != nil {
		t.Fatalf("cloudcore --defaultconfig: %v: %s", err, errOut)
	}
	for _, tc := range []struct {
		name string
		set  map[string]any // dotted path → value
		want []string
	}{
		{
			name: "unknown field",
			set:  map[string]any{"modules.cloudHub.websocket.prot": 10000},
			want: []string{`unknown field "prot"`},
		},
		{
			name: "bad port",
			set:  map[string]any{"modules.cloudHub.quic.port": 70000},
			want: []string{"modules.cloudHub.quic.port: port 70000 is out of range 1-65535"},
		},
		{
			name: "every bad field is listed",
			set:  map[string]any{"kubeAPIConfig.qps": 0, "modules.cloudHub.https.address": "not-an-ip"},
			want: []string{"kubeAPIConfig.qps: must be greater than 0", `modules.cloudHub.https.address: "not-an-ip" is not an IP address`},
		},
	} {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("cloudcore --defaultconfig printed invalid YAML: %v", err)
		}
		for path, v := range tc.set {
			setPath(t, m, strings.Split(path, "."), v)
		}
		b, err := yaml.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "bad-"+strings.ReplaceAll(tc.name, " ", "-")+".yaml")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, err := e.run(20*time.Second, e.tools.cloudcore, "--config", path)
		if code := exitCode(err); code <= 0 {
			t.Errorf("%s: cloudcore --config exit code %d (%v), want a failure; output:\n%s%s", tc.name, code, err, stdout, stderr)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%s: cloudcore's error does not contain %q:\n%s", tc.name, w, stderr)
			}
		}
	}
	return []byte(out)
}

// setPath sets m[path[0]][path[1]]... to v; the parent objects must exist.
func setPath(t *testing.T, m map[string]any, path []string, v any) {
	t.Helper()
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			t.Fatalf("--defaultconfig has no object %q on the way to %v", k, path)
		}
		m = next
	}
	m[path[len(path)-1]] = v
}

// writeCloudConfig writes cloudcore's default configuration, with the test
// control plane's kubeconfig and listeners on 127.0.0.1 at p, to path.
func writeCloudConfig(t *testing.T, defaultConfig []byte, path, kubeconfig string, p ports, mutate ...func(*cloudconfig.CloudCore)) string {
	t.Helper()
	var c cloudconfig.CloudCore
	if err := yaml.UnmarshalStrict(defaultConfig, &c); err != nil {
		t.Fatalf("cloudcore --defaultconfig does not decode strictly: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("cloudcore --defaultconfig is not valid: %v", err)
	}
	c.KubeAPIConfig.KubeConfig = kubeconfig
	h := &c.Modules.CloudHub
	h.WebSocket.Address, h.WebSocket.Port = "127.0.0.1", p.ws
	h.Quic.Address, h.Quic.Port = "127.0.0.1", p.quic
	h.HTTPS.Address, h.HTTPS.Port = "127.0.0.1", p.https
	for _, m := range mutate {
		m(&c)
	}
	b, err := yaml.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// trackEdgecore finds the edgecore keadm join started from its pid file,
// checks it runs with the configuration join wrote, and makes sure it does
// not outlive the test.
func trackEdgecore(t *testing.T, e *env, pidFile, config string) started {
	t.Helper()
	pid, err := readPID(pidFile)
	if err != nil {
		t.Fatalf("after keadm join: %v", err)
	}
	args, err := cmdline(pid)
	if err != nil {
		t.Fatalf("edgecore (pid %d from %s): %v", pid, pidFile, err)
	}
	if want := []string{e.tools.edgecore, "--config", config}; !cmp.Equal(args, want) {
		t.Fatalf("pid %d from %s runs %q, want %q", pid, pidFile, args, want)
	}
	s := started{pid: pid, args: args}
	e.started = append(e.started, s)
	t.Cleanup(func() {
		if running(s.pid, s.args) {
			// keadm started it in its own session, so its group is its pid.
			_ = syscall.Kill(-s.pid, syscall.SIGKILL)
		}
	})
	return s
}

// nodeReady reports whether node is Ready; a node without the edge label is
// an error.
func nodeReady(ctx context.Context, client kubernetes.Interface, name string) (bool, error) {
	n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	if _, ok := n.Labels[edgeRoleLabel]; !ok {
		return false, fmt.Errorf("node %s has no label %s: %v", name, edgeRoleLabel, n.Labels)
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue, fmt.Errorf("node %s: Ready=%s (%s: %s)", name, c.Status, c.Reason, c.Message)
		}
	}
	return false, fmt.Errorf("node %s has no Ready condition", name)
}

// checkKubectlNodes checks that `kubectl get nodes` lists node as Ready with
// the edge role.
func checkKubectlNodes(t *testing.T, e *env, kubeconfig, node string) {
	t.Helper()
	out, errOut, err := e.run(30*time.Second, e.tools.kubectl, "--kubeconfig", kubeconfig, "get", "nodes")
	if err != nil {
		t.Fatalf("kubectl get nodes: %v: %s", err, errOut)
	}
	for line := range strings.Lines(out) {
		// NAME STATUS ROLES AGE VERSION
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != node {
			continue
		}
		if f[1] != "Ready" || !strings.Contains(","+f[2]+",", ",edge,") {
			t.Fatalf("kubectl get nodes shows %q, want %s Ready with role edge:\n%s", line, node, out)
		}
		return
	}
	t.Fatalf("kubectl get nodes does not list %s:\n%s", node, out)
}

// createObjects creates namespace ns, configmap e2e-cm and pod e2e-pod bound
// to node and using the configmap as a volume.
func createObjects(t *testing.T, e *env, client kubernetes.Interface, ns, node string) {
	t.Helper()
	ctx := t.Context()
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-cm", Namespace: ns},
		Data:       map[string]string{"greeting": "hello from the cloud"},
	}
	if _, err := client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Pods are admitted only once the namespace's default ServiceAccount
	// exists, which the controller-manager creates shortly after the
	// namespace.
	e.waitFor(30*time.Second, "serviceaccount "+ns+"/default", func() (bool, error) {
		_, err := client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, err
		}
		return err == nil, err
	})
	automount := false
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-pod", Namespace: ns},
		Spec: corev1.PodSpec{
			NodeName:                     node,
			AutomountServiceAccountToken: &automount,
			Containers: []corev1.Container{{
				Name: "app", Image: "localhost/kubeedge/busybox:1", Command: []string{"sleep", "3600"},
				VolumeMounts: []corev1.VolumeMount{{Name: "cfg", MountPath: "/cfg"}},
			}},
			Volumes: []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{
				ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: cm.Name}}}}},
		},
	}
	if _, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// apiVersions returns the resourceVersions of e2e-pod and e2e-cm in ns, keyed
// the way ObjectSync records name them: "Kind/name".
func apiVersions(ctx context.Context, client kubernetes.Interface, ns string) (map[string]string, error) {
	pod, err := client.CoreV1().Pods(ns).Get(ctx, "e2e-pod", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, "e2e-cm", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return map[string]string{"Pod/" + pod.Name: pod.ResourceVersion, "ConfigMap/" + cm.Name: cm.ResourceVersion}, nil
}

// syncRecords lists node's ObjectSync records in ns: "Kind/name" →
// acknowledged resourceVersion.
func syncRecords(ctx context.Context, dyn dynamic.Interface, ns, node string) (map[string]string, error) {
	list, err := dyn.Resource(objectSyncs).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: syncNodeLabel + "=" + node})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, o := range list.Items {
		kind, _, _ := unstructured.NestedString(o.Object, "spec", "objectKind")
		name, _, _ := unstructured.NestedString(o.Object, "spec", "objectName")
		rv, _, _ := unstructured.NestedString(o.Object, "status", "objectResourceVersion")
		out[kind+"/"+name] = rv
	}
	return out, nil
}

// checkEdgeDatabase opens the stopped edge's database (the one its
// configuration names) and compares its pod and configmap with the API's.
func checkEdgeDatabase(t *testing.T, client kubernetes.Interface, configPath, ns, node string) {
	t.Helper()
	ctx := t.Context()
	cfg, err := edgeconfig.Load(configPath)
	if err != nil {
		t.Fatalf("the configuration keadm join wrote: %v", err)
	}
	if cfg.NodeName() != node {
		t.Fatalf("the configuration keadm join wrote is for node %q, want %q", cfg.NodeName(), node)
	}
	dbPath := cfg.Database.DataSource
	fi, err := os.Stat(dbPath)
	if err != nil {
		t.Fatalf("edge database: %v", err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("edge database %s has mode %o, want 600 (it holds the node's secrets)", dbPath, perm)
	}
	db, err := store.Open(ctx, dbPath)
	if err != nil {
		t.Fatalf("open the edge database: %v", err)
	}
	defer func() {
		if err := db.Close(); err != nil {
			t.Errorf("close the edge database: %v", err)
		}
	}()

	api, err := apiVersions(ctx, client, ns)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"pod/e2e-pod": api["Pod/e2e-pod"], "configmap/e2e-cm": api["ConfigMap/e2e-cm"]}
	got := map[string]string{}
	values := map[string][]byte{}
	for _, typ := range []string{"pod", "configmap"} {
		objs, err := db.List(ctx, typ, ns)
		if err != nil {
			t.Fatalf("list %ss in the edge database: %v", typ, err)
		}
		for _, o := range objs {
			got[typ+"/"+o.Name] = o.ResourceVersion
			values[typ+"/"+o.Name] = o.Value
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("edge database differs from the API (-api +edge):\n%s", diff)
	}
	var cm corev1.ConfigMap
	if err := json.Unmarshal(values["configmap/e2e-cm"], &cm); err != nil {
		t.Fatalf("stored configmap is not a ConfigMap: %v", err)
	}
	if diff := cmp.Diff(map[string]string{"greeting": "hello from the cloud"}, cm.Data); diff != "" {
		t.Errorf("stored configmap data (-want +got):\n%s", diff)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(values["pod/e2e-pod"], &pod); err != nil {
		t.Fatalf("stored pod is not a Pod: %v", err)
	}
	if pod.Spec.NodeName != node || pod.ResourceVersion != api["Pod/e2e-pod"] {
		t.Errorf("stored pod is for node %q at version %q, want %q at %q", pod.Spec.NodeName, pod.ResourceVersion, node, api["Pod/e2e-pod"])
	}
}
