package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"sigs.k8s.io/yaml"

	"github.com/kubeedge-go/kubeedge/internal/cloud/certs"
	cloudconfig "github.com/kubeedge-go/kubeedge/internal/cloud/config"
	"github.com/kubeedge-go/kubeedge/internal/cloud/stream"
	"github.com/kubeedge-go/kubeedge/internal/edge/cri"
	"github.com/kubeedge-go/kubeedge/internal/pki"
	"github.com/kubeedge-go/kubeedge/internal/testenv"
)

// podsEnv is a running cloud and edge for the pod tests: the real binaries
// (cloudcore, keadm join → edgecore) on a control plane with scheduler and
// controller manager, the edge on a private containerd.
type podsEnv struct {
	*env
	cp         *testenv.ControlPlane
	cd         *testenv.Containerd
	rt         *cri.Client
	node       string
	cloudArgs  []string
	cloud      *child
	edgeConfig string
	edgeLog    string
	edgePID    string
	edgecore   started
}

func startPodsEnv(t *testing.T, node string) *podsEnv {
	t.Helper()
	tl := findTools(t)
	e := newEnv(t, tl)
	pe := &podsEnv{env: e, node: node}
	e.step("control plane with scheduler, controller manager, and an egress selector to CloudStream")
	// As an operator does with keadm streamcerts: the KubeEdge CA first, the
	// apiserver's client certificate for CloudStream from it, and the CA in
	// kubeedge/casecret for cloudcore to adopt.
	ca, err := pki.NewCA(time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	streamPort, tunnelPort := freeTCPPort(t), freeTCPPort(t)
	files, err := stream.WriteClientFiles(ca, stream.ClientFilesOptions{Dir: filepath.Join(e.work, "egress"),
		ProxyURL: fmt.Sprintf("https://127.0.0.1:%d", streamPort)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pe.cp = testenv.ControlPlaneForTest(t, testenv.ControlPlaneOptions{
		ControllerManager: true, Scheduler: true, NodeMonitorGracePeriod: 20 * time.Second,
		Egress: &testenv.EgressOptions{ConfigFile: files.EgressConfigFile, KubeletClientCert: files.CertFile,
			KubeletClientKey: files.KeyFile, KubeletCA: files.CAFile, KubeletPreferredAddressTypes: "InternalIP,Hostname"},
	})
	if _, err := pe.cp.Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: certs.DefaultNamespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := pe.cp.Client.CoreV1().Secrets(certs.DefaultNamespace).Create(t.Context(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: certs.CASecret},
		Data:       map[string][]byte{certs.CACertKey: ca.CertDER, certs.CAKeyKey: ca.KeyDER},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.step("containerd with the local images")
	pe.cd = testenv.ContainerdForTest(t, testenv.ContainerdOptions{})
	rt, err := cri.Dial(pe.cd.Endpoint, cri.Options{Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	pe.rt = rt

	e.step("cloudcore")
	out, _, err := e.run(30*time.Second, tl.cloudcore, "--defaultconfig")
	if err != nil {
		t.Fatal(err)
	}
	p := freePorts(t)
	cfgPath := writeCloudConfig(t, []byte(out), filepath.Join(e.work, "cloudcore.yaml"), pe.cp.Kubeconfig, p, func(c *cloudconfig.CloudCore) {
		cs := &c.Modules.CloudStream
		cs.Enable, cs.Address, cs.StreamPort, cs.TunnelPort = true, "127.0.0.1", streamPort, tunnelPort
	})
	pe.cloudArgs = []string{"--config", cfgPath}
	pe.startCloud()

	e.step("keadm join with containerd")
	var token string
	e.waitFor(60*time.Second, "the join token", func() (bool, error) {
		out, errOut, err := e.run(20*time.Second, tl.keadm, "gettoken", "--kube-config", pe.cp.Kubeconfig)
		token = strings.TrimSpace(out)
		return err == nil && token != "", fmt.Errorf("%v: %s", err, errOut)
	})
	edgeDir := filepath.Join(e.work, "edge")
	pe.edgeConfig = filepath.Join(edgeDir, "edgecore.yaml")
	pe.edgeLog = filepath.Join(edgeDir, "edgecore.log")
	pe.edgePID = filepath.Join(edgeDir, "edgecore.pid")
	e.showLog(pe.edgeLog)
	if out, errOut, err := e.run(120*time.Second, tl.keadm, "join",
		fmt.Sprintf("--cloudcore-ipport=127.0.0.1:%d", p.ws), fmt.Sprintf("--certport=%d", p.https),
		fmt.Sprintf("--quicport=%d", p.quic), "--token="+token, "--edgenode-name="+node, "--node-ip=127.0.0.1",
		"--data-dir="+edgeDir, "--config="+pe.edgeConfig, "--edgecore-binary="+tl.edgecore,
		"--remote-runtime-endpoint="+pe.cd.Endpoint, "--set", "modules.edged.cgroupRoot="+pe.cd.CgroupRoot,
		"--set", "modules.metaManager.metaServer.server=127.0.0.1:0",
		"--set", "modules.eventBus.mqttServerInternal=tcp://127.0.0.1:0",
		"--set", "modules.edgeStream.enable=true",
		"--set", fmt.Sprintf("modules.edgeStream.server=127.0.0.1:%d", tunnelPort)); err != nil {
		t.Fatalf("keadm join: %v\n%s%s", err, out, errOut)
	}
	pe.edgecore = trackEdgecore(t, e, pe.edgePID, pe.edgeConfig)
	pe.waitNodeReady()
	return pe
}

func (pe *podsEnv) client() kubernetes.Interface { return pe.cp.Client }

func (pe *podsEnv) startCloud() {
	pe.cloud = pe.start("cloudcore", filepath.Join(pe.work, fmt.Sprintf("cloudcore-%d.log", len(pe.children))), pe.tools.cloudcore, pe.cloudArgs...)
	pe.waitFor(60*time.Second, "cloudcore ready", func() (bool, error) {
		return countFrom(pe.cloud.log, 0, cloudReady) > 0, nil
	})
}

func (pe *podsEnv) waitNodeReady() {
	pe.waitFor(120*time.Second, pe.node+" Ready", func() (bool, error) {
		return nodeReady(pe.t.Context(), pe.client(), pe.node)
	})
}

func (pe *podsEnv) kubectl(args ...string) string {
	pe.t.Helper()
	out, errOut, err := pe.run(60*time.Second, pe.tools.kubectl, append([]string{"--kubeconfig", pe.cp.Kubeconfig}, args...)...)
	if err != nil {
		pe.t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// apply writes obj as YAML and applies it with kubectl, as a user would.
func (pe *podsEnv) apply(obj any) {
	pe.t.Helper()
	b, err := yaml.Marshal(obj)
	if err != nil {
		pe.t.Fatal(err)
	}
	f := filepath.Join(pe.work, fmt.Sprintf("manifest-%d.yaml", time.Now().UnixNano()))
	if err := os.WriteFile(f, b, 0o600); err != nil {
		pe.t.Fatal(err)
	}
	pe.kubectl("apply", "-f", f)
}

func (pe *podsEnv) pods(ns, selector string) []corev1.Pod {
	pe.t.Helper()
	l, err := pe.client().CoreV1().Pods(ns).List(pe.t.Context(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		pe.t.Fatal(err)
	}
	return l.Items
}

func (pe *podsEnv) pod(ns, name string) (*corev1.Pod, error) {
	return pe.client().CoreV1().Pods(ns).Get(pe.t.Context(), name, metav1.GetOptions{})
}

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// containers lists the CRI containers of a pod (all states).
func (pe *podsEnv) containers(ns, pod string) []*runtimeapi.Container {
	pe.t.Helper()
	cs, err := pe.rt.ListContainers(pe.t.Context(), &runtimeapi.ContainerFilter{LabelSelector: map[string]string{
		"io.kubernetes.pod.namespace": ns, "io.kubernetes.pod.name": pod}})
	if err != nil {
		pe.t.Fatal(err)
	}
	return cs
}

func (pe *podsEnv) sandboxes(ns string) []*runtimeapi.PodSandbox {
	pe.t.Helper()
	sbs, err := pe.rt.ListPodSandbox(pe.t.Context(), &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{
		"io.kubernetes.pod.namespace": ns}})
	if err != nil {
		pe.t.Fatal(err)
	}
	return sbs
}

// exec runs cmd in the pod's running container named container, through CRI.
func (pe *podsEnv) exec(ns, pod, container string, cmd ...string) string {
	pe.t.Helper()
	for _, c := range pe.containers(ns, pod) {
		if c.Metadata.Name == container && c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			out, errOut, code, err := pe.rt.ExecSync(pe.t.Context(), c.Id, cmd, 20*time.Second)
			if err != nil || code != 0 {
				pe.t.Fatalf("exec %v in %s/%s: code %d, %v: %s", cmd, ns, pod, code, err, errOut)
			}
			return strings.TrimSpace(string(out))
		}
	}
	pe.t.Fatalf("no running container %s in pod %s/%s", container, ns, pod)
	return ""
}

func (pe *podsEnv) events(ns, involved string) []corev1.Event {
	pe.t.Helper()
	l, err := pe.client().CoreV1().Events(ns).List(pe.t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + involved})
	if err != nil {
		pe.t.Fatal(err)
	}
	return l.Items
}

func hasEvent(evs []corev1.Event, reason, substr string) bool {
	return slices.ContainsFunc(evs, func(ev corev1.Event) bool {
		return ev.Reason == reason && strings.Contains(ev.Message, substr)
	})
}

func busybox(name string, cmd ...string) corev1.Container {
	return corev1.Container{Name: name, Image: testenv.BusyboxImage, ImagePullPolicy: corev1.PullIfNotPresent, Command: cmd}
}

func edgeDeployment(ns, name string, replicas int32, spec corev1.PodSpec) *appsv1.Deployment {
	spec.NodeSelector = map[string]string{edgeRoleLabel: ""}
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec}},
	}
}

// TestPodsEndToEnd runs apps on the edge with the real binaries and a real
// containerd: a Deployment with the edge nodeSelector, configmap and secret
// as volumes and env, probes, crash back-off, bad pods next to good ones,
// scaling to zero; then offline autonomy — cloudcore stopped, edgecore and
// containerd killed and restarted with the cloud still down — and the
// reconnect, which must not delete or recreate any pod.
func TestPodsEndToEnd(t *testing.T) {
	pe := startPodsEnv(t, "pods-e2e")
	ctx := t.Context()
	const ns = "apps"
	pe.kubectl("create", "namespace", ns)
	pe.kubectl("-n", ns, "create", "configmap", "app-config", "--from-literal=greeting=hello-edge")
	pe.kubectl("-n", ns, "create", "secret", "generic", "app-secret", "--from-literal=password=s3cret")

	pe.step("a Deployment of 3 with the edge nodeSelector, configmap and secret as volumes and env")
	web := corev1.PodSpec{
		Containers: []corev1.Container{{
			Name: "web", Image: testenv.BusyboxImage, ImagePullPolicy: corev1.PullIfNotPresent,
			Command: []string{"httpd", "-f", "-p", "8080", "-h", "/cfg"},
			Env: []corev1.EnvVar{
				{Name: "GREETING", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"}, Key: "greeting"}}},
				{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: "app-secret"}, Key: "password"}}},
			},
			VolumeMounts: []corev1.VolumeMount{{Name: "cfg", MountPath: "/cfg"}, {Name: "sec", MountPath: "/sec", ReadOnly: true}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/greeting", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 2},
		}},
		Volumes: []corev1.Volume{
			{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"}}}},
			{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "app-secret"}}},
		},
	}
	pe.apply(edgeDeployment(ns, "web", 3, web))
	var webPods []corev1.Pod
	pe.waitFor(180*time.Second, "3 web pods Running and Ready on the edge node", func() (bool, error) {
		webPods = pe.pods(ns, "app=web")
		ready := 0
		for _, p := range webPods {
			if p.Spec.NodeName == pe.node && p.Status.Phase == corev1.PodRunning && isReady(&p) && p.Status.PodIP != "" {
				ready++
			}
		}
		return ready == 3 && len(webPods) == 3, fmt.Errorf("%d of %d ready", ready, len(webPods))
	})
	for _, p := range webPods {
		ip, err := netip.ParseAddr(p.Status.PodIP)
		if err != nil || !pe.cd.Subnet.Contains(ip) {
			t.Fatalf("pod %s has IP %q, not on the edge bridge %s", p.Name, p.Status.PodIP, pe.cd.Subnet)
		}
		if p.Status.HostIP != "127.0.0.1" {
			t.Errorf("pod %s hostIP %q", p.Name, p.Status.HostIP)
		}
	}
	first := webPods[0].Name
	pe.step("kubectl exec, logs and port-forward through CloudStream (no iptables)")
	kexec := func(pod string, cmd ...string) string {
		return strings.TrimSpace(pe.kubectl(append([]string{"-n", ns, "exec", pod, "-c", "web", "--"}, cmd...)...))
	}
	if got := kexec(first, "cat", "/cfg/greeting"); got != "hello-edge" {
		t.Errorf("configmap volume through kubectl exec: %q", got)
	}
	if got := kexec(first, "cat", "/sec/password"); got != "s3cret" {
		t.Errorf("secret volume through kubectl exec: %q", got)
	}
	if got := kexec(first, "sh", "-c", "echo $GREETING $PASSWORD"); got != "hello-edge s3cret" {
		t.Errorf("env from configmap and secret through kubectl exec: %q", got)
	}
	if _, errOut, err := pe.run(60*time.Second, pe.tools.kubectl, "--kubeconfig", pe.cp.Kubeconfig, "-n", ns, "exec", first, "--", "sh", "-c", "exit 5"); exitCode(err) != 5 {
		t.Errorf("kubectl exec of a command that exits 5: %v %s", err, errOut)
	}
	pfPort := freeTCPPort(t)
	pf := pe.start("kubectl port-forward", filepath.Join(pe.work, "port-forward.log"), pe.tools.kubectl,
		"--kubeconfig", pe.cp.Kubeconfig, "-n", ns, "port-forward", "pod/"+first, fmt.Sprintf("%d:8080", pfPort))
	pe.waitFor(60*time.Second, "the pod's port 8080 through kubectl port-forward", func() (bool, error) {
		res, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/greeting", pfPort))
		return err == nil && res == "hello-edge", err
	})
	_ = pe.stop(pf, 10*time.Second)

	pe.step("a failing liveness probe restarts the container")
	pe.apply(edgeDeployment(ns, "liveness", 1, corev1.PodSpec{Containers: []corev1.Container{{
		Name: "app", Image: testenv.BusyboxImage, ImagePullPolicy: corev1.PullIfNotPresent,
		Command: []string{"sh", "-c", "touch /tmp/healthy; sleep 4; rm /tmp/healthy; exec sleep 3600"},
		LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{
			Command: []string{"cat", "/tmp/healthy"}}}, PeriodSeconds: 1, FailureThreshold: 2},
	}}}))
	pe.waitFor(120*time.Second, "restartCount to grow from liveness failures", func() (bool, error) {
		for _, p := range pe.pods(ns, "app=liveness") {
			if cs := p.Status.ContainerStatuses; len(cs) == 1 && cs[0].RestartCount >= 1 {
				return hasEvent(pe.events(ns, p.Name), "Unhealthy", "Liveness probe failed"), nil
			}
		}
		return false, nil
	})

	pe.step("a crashing container backs off (CrashLoopBackOff)")
	pe.apply(edgeDeployment(ns, "crasher", 1, corev1.PodSpec{Containers: []corev1.Container{
		busybox("app", "sh", "-c", "echo about to fail; exit 3")}}))
	var crasher string
	pe.waitFor(120*time.Second, "CrashLoopBackOff", func() (bool, error) {
		for _, p := range pe.pods(ns, "app=crasher") {
			for _, cs := range p.Status.ContainerStatuses {
				if w := cs.State.Waiting; w != nil && w.Reason == "CrashLoopBackOff" && cs.RestartCount >= 1 &&
					cs.LastTerminationState.Terminated != nil && cs.LastTerminationState.Terminated.ExitCode == 3 {
					crasher = p.Name
					return true, nil
				}
			}
		}
		return false, nil
	})
	if got := pe.kubectl("-n", ns, "logs", crasher, "--previous", "--tail=1"); strings.TrimSpace(got) != "about to fail" {
		t.Errorf("kubectl logs --previous of the crashing container: %q", got)
	}

	pe.step("bad pods get clear statuses and events; the node and the other pods are unaffected")
	bad := map[string]corev1.PodSpec{
		"no-such-image": {Containers: []corev1.Container{{Name: "app", Image: "localhost/kubeedge/does-not-exist:1",
			ImagePullPolicy: corev1.PullNever, Command: []string{"true"}}}},
		"bad-volume": {Containers: []corev1.Container{{Name: "app", Image: testenv.BusyboxImage, ImagePullPolicy: corev1.PullIfNotPresent,
			Command: []string{"sleep", "3600"}, VolumeMounts: []corev1.VolumeMount{{Name: "host", MountPath: "/host"}}}},
			Volumes: []corev1.Volume{{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
				Path: "/nonexistent/kubeedge-e2e/file", Type: new(corev1.HostPathFile)}}}}},
		"closed-port-probe": {Containers: []corev1.Container{{Name: "app", Image: testenv.BusyboxImage, ImagePullPolicy: corev1.PullIfNotPresent,
			Command: []string{"sleep", "3600"}, ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
				TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(9)}}, PeriodSeconds: 1}}}},
		"unsupported-pvc": {Containers: []corev1.Container{{Name: "app", Image: testenv.BusyboxImage, ImagePullPolicy: corev1.PullIfNotPresent,
			Command: []string{"sleep", "3600"}, VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}},
	}
	for name, spec := range bad {
		spec.NodeName = pe.node
		p := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
		pe.apply(p)
	}
	expect := map[string]func(p *corev1.Pod, evs []corev1.Event) bool{
		"no-such-image": func(p *corev1.Pod, _ []corev1.Event) bool {
			return waitingReason(p) == "ErrImageNeverPull"
		},
		"bad-volume": func(p *corev1.Pod, evs []corev1.Event) bool {
			return hasEvent(evs, "FailedMount", "/nonexistent/kubeedge-e2e/file")
		},
		"closed-port-probe": func(p *corev1.Pod, evs []corev1.Event) bool {
			return p.Status.Phase == corev1.PodRunning && !isReady(p) && hasEvent(evs, "Unhealthy", "Readiness probe failed")
		},
		"unsupported-pvc": func(p *corev1.Pod, evs []corev1.Event) bool {
			return hasEvent(evs, "FailedMount", "persistentVolumeClaim")
		},
	}
	for name, ok := range expect {
		pe.waitFor(90*time.Second, name+"'s clear status or event", func() (bool, error) {
			p, err := pe.pod(ns, name)
			if err != nil {
				return false, err
			}
			evs := pe.events(ns, name)
			return ok(p, evs), fmt.Errorf("status %+v, events %v", p.Status, eventSummary(evs))
		})
	}
	if ready, err := nodeReady(ctx, pe.client(), pe.node); !ready {
		t.Fatalf("the node is not Ready next to bad pods: %v", err)
	}
	for _, p := range pe.pods(ns, "app=web") {
		if !isReady(&p) {
			t.Fatalf("web pod %s lost readiness next to bad pods", p.Name)
		}
	}
	for name := range bad {
		pe.kubectl("-n", ns, "delete", "pod", name, "--wait=false")
	}
	pe.kubectl("-n", ns, "delete", "deployment", "liveness", "crasher", "--wait=false")

	pe.step("offline autonomy: cloudcore stops, edgecore and containerd are killed and come back with the cloud down")
	before := map[string]podBefore{}
	for _, p := range pe.pods(ns, "app=web") {
		before[p.Name] = podBefore{uid: string(p.UID), containers: containerIDs(pe.containers(ns, p.Name))}
	}
	if err := pe.stop(pe.cloud, 30*time.Second); err != nil {
		t.Logf("cloudcore exited with %v", err)
	}
	if err := syscall.Kill(pe.edgecore.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	pe.waitFor(30*time.Second, "edgecore to be gone", func() (bool, error) { return !running(pe.edgecore.pid, pe.edgecore.args), nil })
	if err := pe.cd.StopDaemon(true); err != nil { // containerd and every shim: the containers die
		t.Fatal(err)
	}
	if err := pe.cd.StartDaemon(ctx); err != nil {
		t.Fatal(err)
	}
	edgecore := pe.start("edgecore (offline restart)", pe.edgeLog, pe.tools.edgecore, "--config", pe.edgeConfig)
	pe.waitFor(120*time.Second, "every web pod to run again on new containers while the cloud is down", func() (bool, error) {
		for name, b := range before {
			cs := pe.containers(ns, name)
			runningNew := slices.ContainsFunc(cs, func(c *runtimeapi.Container) bool {
				return c.State == runtimeapi.ContainerState_CONTAINER_RUNNING && !slices.Contains(b.containers, c.Id)
			})
			if !runningNew {
				return false, fmt.Errorf("pod %s has no new running container", name)
			}
		}
		return true, nil
	})
	for name := range before {
		if got := pe.exec(ns, name, "web", "cat", "/cfg/greeting"); got != "hello-edge" {
			t.Errorf("after the offline restart, pod %s's configmap volume holds %q", name, got)
		}
	}

	pe.step("the cloud sees the node unreachable (its pods are kept)")
	pe.waitFor(120*time.Second, "the node to be NotReady in the API", func() (bool, error) {
		ready, err := nodeReady(ctx, pe.client(), pe.node)
		return !ready && err != nil && strings.Contains(err.Error(), "Unknown"), err
	})

	pe.step("cloudcore returns: node Ready, no pod deleted or recreated, status matches")
	pe.startCloud()
	pe.waitNodeReady()
	pe.waitFor(60*time.Second, "the API's pod statuses to show the new containers", func() (bool, error) {
		pods := pe.pods(ns, "app=web")
		if len(pods) != len(before) {
			return false, fmt.Errorf("%d web pods, want %d", len(pods), len(before))
		}
		for _, p := range pods {
			b, ok := before[p.Name]
			if !ok || string(p.UID) != b.uid || p.DeletionTimestamp != nil {
				t.Fatalf("pod %s (uid %s) was recreated or deleted across the outage", p.Name, p.UID)
			}
			cs := p.Status.ContainerStatuses
			if len(cs) != 1 || cs[0].State.Running == nil || !isReady(&p) {
				return false, fmt.Errorf("pod %s: %+v", p.Name, cs)
			}
			live := containerIDs(pe.containers(ns, p.Name))
			if !slices.Contains(live, strings.TrimPrefix(cs[0].ContainerID, "containerd://")) || slices.Contains(b.containers, strings.TrimPrefix(cs[0].ContainerID, "containerd://")) {
				return false, fmt.Errorf("pod %s reports container %s, live %v", p.Name, cs[0].ContainerID, live)
			}
		}
		return true, nil
	})

	pe.step("scaling to 0 removes the containers and sandboxes")
	pe.kubectl("-n", ns, "scale", "deployment", "web", "--replicas=0")
	pe.waitFor(120*time.Second, "no web pods, containers or sandboxes", func() (bool, error) {
		if n := len(pe.pods(ns, "app=web")); n > 0 {
			return false, fmt.Errorf("%d web pods left", n)
		}
		for _, sb := range pe.sandboxes(ns) {
			if sb.Labels["app"] == "web" {
				return false, fmt.Errorf("sandbox %s left", sb.Metadata.Name)
			}
		}
		return true, nil
	})
	_ = pe.stop(edgecore, 30*time.Second)
}

// podBefore is what a pod was before the outage.
type podBefore struct {
	uid        string
	containers []string
}

func containerIDs(cs []*runtimeapi.Container) []string {
	var ids []string
	for _, c := range cs {
		ids = append(ids, c.Id)
	}
	return ids
}

func waitingReason(p *corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Waiting != nil {
			return cs.State.Waiting.Reason
		}
	}
	return ""
}

func eventSummary(evs []corev1.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Reason+": "+ev.Message+" (x"+strconv.Itoa(int(ev.Count))+")")
	}
	return out
}

func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return strings.TrimSpace(string(b)), err
}
