package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubeedge-go/kubeedge/internal/store"
)

var objectSyncs = schema.GroupVersionResource{Group: "reliablesyncs.kubeedge.io", Version: "v1alpha1", Resource: "objectsyncs"}

func mustCreateNS(t *testing.T, client kubernetes.Interface, name string) {
	t.Helper()
	if _, err := client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func mustCreateCM(t *testing.T, client kubernetes.Interface, ns, name, value string) {
	t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: map[string]string{"v": value}}
	if _, err := client.CoreV1().ConfigMaps(ns).Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func mustCreateSecret(t *testing.T, client kubernetes.Interface, ns, name string) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: map[string]string{"password": "s3cret"}}
	if _, err := client.CoreV1().Secrets(ns).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// mustCreatePod binds a pod to node directly (no scheduler needed) using cm and secret.
func mustCreatePod(t *testing.T, client kubernetes.Interface, ns, name, node, cm, secret string) {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			NodeName:                     node,
			AutomountServiceAccountToken: new(bool),
			Containers: []corev1.Container{{
				Name: "app", Image: "localhost/kubeedge/busybox:1",
				Env: []corev1.EnvVar{{Name: "PW", ValueFrom: &corev1.EnvVarSource{
					SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: "password"}}}},
			}},
			Volumes: []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{
				ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: cm}}}}},
		},
	}
	if _, err := client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// cloudView is what node should hold according to the API: "type/ns/name" → resourceVersion.
func cloudView(t *testing.T, client kubernetes.Interface, ns, node string) map[string]string {
	t.Helper()
	ctx := context.Background()
	want := map[string]string{}
	pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		want["pod/"+ns+"/"+p.Name] = p.ResourceVersion
		for _, v := range p.Spec.Volumes {
			if v.ConfigMap != nil {
				if cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{}); err == nil {
					want["configmap/"+ns+"/"+cm.Name] = cm.ResourceVersion
				}
			}
		}
		for _, c := range p.Spec.Containers {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					if s, err := client.CoreV1().Secrets(ns).Get(ctx, e.ValueFrom.SecretKeyRef.Name, metav1.GetOptions{}); err == nil {
						want["secret/"+ns+"/"+s.Name] = s.ResourceVersion
					}
				}
			}
		}
	}
	return want
}

// edgeView is what the edge's store holds in namespace ns.
func edgeView(t *testing.T, s store.Store, ns string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, typ := range []string{"pod", "configmap", "secret"} {
		objs, err := s.List(context.Background(), typ, ns)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			got[typ+"/"+o.Namespace+"/"+o.Name] = o.ResourceVersion
		}
	}
	return got
}

// syncRecords lists node's ObjectSync records in ns: "kind/name" → resourceVersion.
func syncRecords(t *testing.T, c *cloud, ns, node string) map[string]string {
	t.Helper()
	list, err := c.Dynamic.Resource(objectSyncs).Namespace(ns).List(context.Background(),
		metav1.ListOptions{LabelSelector: "reliablesyncs.kubeedge.io/node=" + node})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, o := range list.Items {
		kind, _, _ := unstructuredString(o.Object, "spec", "objectKind")
		name, _, _ := unstructuredString(o.Object, "spec", "objectName")
		rv, _, _ := unstructuredString(o.Object, "status", "objectResourceVersion")
		out[kind+"/"+name] = rv
	}
	return out
}

func unstructuredString(obj map[string]any, path ...string) (string, bool, error) {
	var cur any = obj
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false, fmt.Errorf("%v is not an object", path)
		}
		cur = m[p]
	}
	s, ok := cur.(string)
	return s, ok, nil
}

// TestDeliveryOnlyToOwnNode: a node's pods, configmaps and secrets reach its
// store, and nothing meant for another node does.
func TestDeliveryOnlyToOwnNode(t *testing.T) {
	cp := controlPlane(t)
	c := startCloud(t, cp, freePorts(t))
	tok := token(t, cp.Client)
	ns := "deliver"
	mustCreateNS(t, cp.Client, ns)
	a := startEdge(t, edgeConfig(t, t.TempDir(), "deliver-a", c.ports, tok, "websocket"))
	b := startEdge(t, edgeConfig(t, t.TempDir(), "deliver-b", c.ports, tok, "quic"))
	mustCreateCM(t, cp.Client, ns, "cm-a", "1")
	mustCreateSecret(t, cp.Client, ns, "sec-a")
	mustCreateCM(t, cp.Client, ns, "cm-b", "1")
	mustCreateSecret(t, cp.Client, ns, "sec-b")
	mustCreateCM(t, cp.Client, ns, "unused", "1")
	mustCreatePod(t, cp.Client, ns, "pod-a", "deliver-a", "cm-a", "sec-a")
	mustCreatePod(t, cp.Client, ns, "pod-b", "deliver-b", "cm-b", "sec-b")

	for _, e := range []*edge{a, b} {
		node := e.cfg.NodeName()
		// Read the cloud's view each time: cloudcore itself updates the pods
		// (their tolerations) right after they are bound.
		waitFor(t, 30*time.Second, node+"'s store to match the cloud", func() (bool, error) {
			want := cloudView(t, cp.Client, ns, node)
			if len(want) != 3 {
				t.Fatalf("cloud view of %s = %v, want a pod, a configmap and a secret", node, want)
			}
			got := edgeView(t, e.store(t), ns)
			return cmp.Equal(want, got), fmt.Errorf("diff (-cloud +edge):\n%s", cmp.Diff(want, got))
		})
	}
	// Secrets are sealed at rest: the database file never holds them in clear.
	for _, e := range []*edge{a, b} {
		var raw []byte
		for _, suffix := range []string{"", "-wal"} {
			if data, err := os.ReadFile(e.cfg.Database.DataSource + suffix); err == nil {
				raw = append(raw, data...)
			}
		}
		if len(raw) == 0 || bytes.Contains(raw, []byte("czNjcmV0")) || bytes.Contains(raw, []byte("s3cret")) {
			t.Fatalf("%s's database (%d bytes) holds the secret in clear text", e.cfg.NodeName(), len(raw))
		}
		if sec, err := e.store(t).Get(context.Background(), "secret", ns, "sec-"+strings.TrimPrefix(e.cfg.NodeName(), "deliver-")); err != nil || !bytes.Contains(sec.Value, []byte("czNjcmV0")) {
			t.Fatalf("%s cannot read its secret back: %v", e.cfg.NodeName(), err)
		}
	}
	// Edge apps see the same through the node's MetaServer.
	for _, e := range []*edge{a, b} {
		ms, err := kubernetes.NewForConfig(&rest.Config{Host: "http://" + e.MetaServer.Addr().String()})
		if err != nil {
			t.Fatal(err)
		}
		pods, err := ms.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
		want := "pod-" + strings.TrimPrefix(e.cfg.NodeName(), "deliver-")
		if err != nil || len(pods.Items) != 1 || pods.Items[0].Name != want || pods.Items[0].Spec.NodeName != e.cfg.NodeName() {
			t.Fatalf("%s's metaserver lists %v (%v), want only %s", e.cfg.NodeName(), pods.Items, err, want)
		}
	}
	// Records of what each node acknowledged, with KubeEdge's names.
	waitFor(t, 30*time.Second, "ObjectSync records", func() (bool, error) {
		got := syncRecords(t, c, ns, "deliver-a")
		return len(got) == 3, fmt.Errorf("records: %v", got)
	})
	podA, err := cp.Client.CoreV1().Pods(ns).Get(context.Background(), "pod-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Dynamic.Resource(objectSyncs).Namespace(ns).Get(context.Background(), "deliver-a."+string(podA.UID), metav1.GetOptions{}); err != nil {
		t.Fatalf("ObjectSync deliver-a.<pod uid>: %v", err)
	}
}

// TestOfflineChangesThenCloudRestart: changes made while the edge was
// offline (creates, updates, deletes) reach it on reconnect, leaving its
// store equal to the cloud's view; then a cloudcore restart resends nothing
// already acknowledged.
func TestOfflineChangesThenCloudRestart(t *testing.T) {
	cp := controlPlane(t)
	p := freePorts(t)
	c := startCloud(t, cp, p)
	ns, node := "offline", "offline-edge"
	mustCreateNS(t, cp.Client, ns)
	cfg := edgeConfig(t, t.TempDir(), node, p, token(t, cp.Client), "websocket")
	e := startEdge(t, cfg)
	for i := range 3 {
		mustCreateCM(t, cp.Client, ns, fmt.Sprint("cm-", i), "1")
		mustCreateSecret(t, cp.Client, ns, fmt.Sprint("sec-", i))
		mustCreatePod(t, cp.Client, ns, fmt.Sprint("pod-", i), node, fmt.Sprint("cm-", i), fmt.Sprint("sec-", i))
	}
	waitFor(t, 30*time.Second, "first sync", func() (bool, error) {
		want, got := cloudView(t, cp.Client, ns, node), edgeView(t, e.store(t), ns)
		return len(want) == 9 && cmp.Equal(want, got), fmt.Errorf("diff:\n%s", cmp.Diff(want, got))
	})

	e.stop()
	ctx := context.Background()
	// While offline: update, delete (pod and a referenced secret), create.
	cm0, _ := cp.Client.CoreV1().ConfigMaps(ns).Get(ctx, "cm-0", metav1.GetOptions{})
	cm0.Data["v"] = "2"
	if _, err := cp.Client.CoreV1().ConfigMaps(ns).Update(ctx, cm0, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	zero := int64(0)
	if err := cp.Client.CoreV1().Pods(ns).Delete(ctx, "pod-1", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	if err := cp.Client.CoreV1().Secrets(ns).Delete(ctx, "sec-2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	mustCreateCM(t, cp.Client, ns, "cm-new", "1")
	mustCreateSecret(t, cp.Client, ns, "sec-new")
	mustCreatePod(t, cp.Client, ns, "pod-new", node, "cm-new", "sec-new")

	e = startEdge(t, cfg)
	var want map[string]string
	waitFor(t, 30*time.Second, "the edge store to equal the cloud's view after reconnect", func() (bool, error) {
		want = cloudView(t, cp.Client, ns, node)
		got := edgeView(t, e.store(t), ns)
		return cmp.Equal(want, got), fmt.Errorf("diff (-cloud +edge):\n%s", cmp.Diff(want, got))
	})
	if _, gone := want["pod/"+ns+"/pod-1"]; gone {
		t.Fatal("pod-1 should be gone from the cloud view")
	}
	// ObjectSync records equal what the edge holds.
	waitFor(t, 30*time.Second, "ObjectSync records to match", func() (bool, error) {
		if c.Acks.Pending() != 0 {
			return false, nil
		}
		got := syncRecords(t, c, ns, node)
		wantRecords := map[string]string{}
		for k, rv := range want {
			parts := strings.SplitN(k, "/", 3) // type/namespace/name
			wantRecords[kindOf(parts[0])+"/"+parts[2]] = rv
		}
		return cmp.Equal(wantRecords, got), fmt.Errorf("diff (-want +records):\n%s", cmp.Diff(wantRecords, got))
	})

	// Restart cloudcore: nothing already acknowledged is sent again.
	<-e.Ready()
	received := e.Meta.Stats().Received
	connects := e.Hub.Connects()
	c.stop()
	c2 := startCloud(t, cp, p)
	waitFor(t, 30*time.Second, "the edge to reconnect", func() (bool, error) {
		return e.Hub.Connects() > connects && c2.Hub.Session(node) != nil, nil
	})
	waitFor(t, 30*time.Second, "the new cloudcore to finish comparing", func() (bool, error) {
		return c2.Delivery.Pending(node) == 0 && len(c2.Delivery.AckedVersions(node)) == len(want), nil
	})
	if st := c2.Delivery.Stats(); st.Sent != 0 {
		t.Fatalf("the restarted cloudcore sent %d object messages, want 0", st.Sent)
	}
	if got := e.Meta.Stats().Received; got != received {
		t.Fatalf("the edge received %d object messages after the cloudcore restart, want 0", got-received)
	}
}

func kindOf(typ string) string {
	return map[string]string{"pod": "Pod", "configmap": "ConfigMap", "secret": "Secret"}[typ]
}
