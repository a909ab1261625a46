package metaserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/kubeedge-go/kubeedge/internal/store"
	"github.com/kubeedge-go/kubeedge/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"),
	)
}

// fixture is a server on a free port over a memory store; put and del
// change the store and notify the server, as MetaManager does.
type fixture struct {
	t      *testing.T
	st     store.Store
	srv    *Server
	client kubernetes.Interface
	base   string
}

func start(t *testing.T, cfg Config) *fixture {
	t.Helper()
	cfg.Address = "127.0.0.1:0"
	st := store.NewMemory()
	srv, err := New(cfg, Deps{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for srv.Addr() == nil {
		if time.Now().After(deadline) {
			t.Fatal("metaserver did not listen")
		}
		time.Sleep(5 * time.Millisecond)
	}
	base := "http://" + srv.Addr().String()
	client, err := kubernetes.NewForConfig(&rest.Config{Host: base})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, st: st, srv: srv, client: client, base: base}
}

func (f *fixture) put(typ string, obj any) {
	f.t.Helper()
	b, err := json.Marshal(obj)
	if err != nil {
		f.t.Fatal(err)
	}
	m := obj.(metav1.Object)
	ch := store.Change{Op: store.OpPut, Object: store.Object{Type: typ, Namespace: m.GetNamespace(), Name: m.GetName(), ResourceVersion: m.GetResourceVersion(), Value: b}}
	if err := f.st.Apply(context.Background(), []store.Change{ch}); err != nil {
		f.t.Fatal(err)
	}
	f.srv.Notify(ch)
}

func (f *fixture) del(typ, ns, name string) {
	f.t.Helper()
	ch := store.Change{Op: store.OpDelete, Object: store.Object{Type: typ, Namespace: ns, Name: name}}
	if err := f.st.Apply(context.Background(), []store.Change{ch}); err != nil {
		f.t.Fatal(err)
	}
	f.srv.Notify(ch)
}

func pod(ns, name, phase string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, ResourceVersion: "12345"},
		Spec:       corev1.PodSpec{NodeName: "edge-1"}, Status: corev1.PodStatus{Phase: corev1.PodPhase(phase)}}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestClientGoListGetAndInformer(t *testing.T) {
	f := start(t, Config{})
	f.put("pod", pod("default", "a", "Running", map[string]string{"app": "web"}))
	f.put("pod", pod("other", "b", "Pending", map[string]string{"app": "db"}))
	f.put("configmap", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "cfg"}, Data: map[string]string{"k": "v"}})
	ctx := context.Background()

	all, err := f.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil || len(all.Items) != 2 {
		t.Fatalf("list all: %d items, %v", len(all.Items), err)
	}
	web, err := f.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil || len(web.Items) != 1 || web.Items[0].Name != "a" {
		t.Fatalf("label selector: %+v %v", web.Items, err)
	}
	pending, err := f.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "status.phase=Pending"})
	if err != nil || len(pending.Items) != 1 || pending.Items[0].Name != "b" {
		t.Fatalf("field selector: %+v %v", pending.Items, err)
	}
	if _, err := f.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.hostname=x"}); !apierrors.IsBadRequest(err) {
		t.Errorf("unsupported field selector: %v, want BadRequest", err)
	}
	cm, err := f.client.CoreV1().ConfigMaps("default").Get(ctx, "cfg", metav1.GetOptions{})
	if err != nil || cm.Data["k"] != "v" {
		t.Fatalf("get configmap: %+v %v", cm, err)
	}
	if _, err := f.client.CoreV1().Pods("default").Get(ctx, "nope", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get missing: %v, want NotFound", err)
	}
	if _, err := f.client.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("secrets: %v, want Forbidden by default", err)
	}
	if err := f.client.CoreV1().Pods("default").Delete(ctx, "a", metav1.DeleteOptions{}); !apierrors.IsMethodNotSupported(err) {
		t.Errorf("delete: %v, want MethodNotAllowed", err)
	}

	// An informer sees adds, updates and deletes after its initial list.
	factory := informers.NewSharedInformerFactoryWithOptions(f.client, 0, informers.WithNamespace("default"))
	inf := factory.Core().V1().Pods().Informer()
	ictx, cancel := context.WithCancel(ctx)
	defer func() { cancel(); factory.Shutdown() }()
	factory.Start(ictx.Done())
	if !cache.WaitForCacheSync(ictx.Done(), inf.HasSynced) {
		t.Fatal("informer did not sync")
	}
	lister := factory.Core().V1().Pods().Lister()
	f.put("pod", pod("default", "c", "Pending", nil))
	f.put("pod", pod("default", "a", "Succeeded", nil))
	f.del("pod", "default", "c")
	f.put("pod", pod("other", "ignored", "Running", nil))
	f.put("pod", pod("default", "d", "Running", nil))
	waitFor(t, "the informer to follow the changes", func() bool {
		ps, _ := lister.List(labelsEverything())
		a, err := lister.Pods("default").Get("a")
		_, cErr := lister.Pods("default").Get("c")
		_, dErr := lister.Pods("default").Get("d")
		return len(ps) == 2 && err == nil && a.Status.Phase == corev1.PodSucceeded && apierrors.IsNotFound(cErr) && dErr == nil
	})
}

func TestWatchResumeAndExpiry(t *testing.T) {
	f := start(t, Config{WindowSize: 3})
	ctx := context.Background()
	list, err := f.client.CoreV1().Pods("ns").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rv := list.ResourceVersion
	f.put("pod", pod("ns", "p1", "Running", nil))
	f.put("pod", pod("ns", "p2", "Running", nil))
	// Resume from the list's revision: both changes are replayed.
	w, err := f.client.CoreV1().Pods("ns").Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for len(names) < 2 {
		select {
		case ev := <-w.ResultChan():
			p := ev.Object.(*corev1.Pod)
			names = append(names, string(ev.Type)+" "+p.Name)
		case <-time.After(10 * time.Second):
			t.Fatalf("replayed %v only", names)
		}
	}
	w.Stop()
	if fmt.Sprint(names) != "[ADDED p1 ADDED p2]" {
		t.Errorf("replay %v", names)
	}
	// Once the window moved past it, the old revision is expired.
	for i := range 5 {
		f.put("pod", pod("ns", fmt.Sprint("q", i), "Running", nil))
	}
	_, err = f.client.CoreV1().Pods("ns").Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
	var status apierrors.APIStatus
	if err == nil || !errors.As(err, &status) || status.Status().Code != http.StatusGone {
		t.Fatalf("watch from an expired revision: %v, want 410 Gone", err)
	}
}

func TestSecretsWhenEnabledAndRawErrors(t *testing.T) {
	f := start(t, Config{ServeSecrets: true})
	f.put("secret", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s"}, Data: map[string][]byte{"k": []byte("v")}})
	s, err := f.client.CoreV1().Secrets("ns").Get(context.Background(), "s", metav1.GetOptions{})
	if err != nil || string(s.Data["k"]) != "v" {
		t.Fatalf("secret %+v %v", s, err)
	}
	for path, want := range map[string]int{
		"/api/v1/widgets": http.StatusNotFound,
		"/api/v1/pods?watch=true&resourceVersion=x": http.StatusBadRequest,
		"/api/v1/pods?labelSelector=a%3D%3D%3Db":    http.StatusBadRequest,
		"/api/v1/namespaces/ns/persistentvolumes":   http.StatusNotFound,
	} {
		resp, err := http.Get(f.base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || !strings.Contains(string(body), `"kind":"Status"`) {
			t.Errorf("%s: %d %s, want %d with a Status", path, resp.StatusCode, body, want)
		}
	}
}

// TestKubectl drives the real kubectl against the metaserver, as a user on
// the edge host would.
func TestKubectl(t *testing.T) {
	binDir, err := testenv.DefaultBinDir()
	if err != nil {
		t.Fatal(err)
	}
	kubectl := filepath.Join(binDir, "kubectl")
	_, statErr := os.Stat(kubectl)
	testenv.Require(t, statErr == nil, "kubectl not built (make k8s): "+kubectl)
	f := start(t, Config{})
	f.put("pod", pod("default", "web-1", "Running", map[string]string{"app": "web"}))
	cmd := exec.Command(kubectl, "--server", f.base, "get", "pods", "-A", "-l", "app=web", "-o", "name")
	cmd.Env = append(os.Environ(), "KUBECONFIG=/dev/null", "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "pod/web-1" {
		t.Fatalf("kubectl get pods: %v\n%s", err, out)
	}
}

func labelsEverything() labels.Selector { return labels.Everything() }
