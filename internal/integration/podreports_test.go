package integration

import (
	"context"
	"errors"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeedge-go/kubeedge/internal/edge/uplink"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

func runningStatus(now time.Time) corev1.PodStatus {
	t := metav1.NewTime(now.Truncate(time.Second))
	return corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: "10.88.0.7", PodIPs: []corev1.PodIP{{IP: "10.88.0.7"}}, HostIP: "127.0.0.1",
		StartTime: &t,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: t},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: t},
		},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: true, Image: "localhost/kubeedge/busybox:1",
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: t}}}},
	}
}

// TestPodReportsThroughTheCloud: pod status, events, the final deletion and
// service-account tokens go from a real edgecore through cloudcore to the
// real apiserver, and a node may only report about its own pods.
func TestPodReportsThroughTheCloud(t *testing.T) {
	cp := controlPlane(t)
	c := startCloud(t, cp, freePorts(t))
	tok := token(t, cp.Client)
	ns := "reports"
	mustCreateNS(t, cp.Client, ns)
	e := startEdge(t, edgeConfig(t, t.TempDir(), "reports-a", c.ports, tok, "websocket"))
	mustCreateCM(t, cp.Client, ns, "cm", "1")
	mustCreateSecret(t, cp.Client, ns, "sec")
	mustCreatePod(t, cp.Client, ns, "mine", "reports-a", "cm", "sec")
	mustCreatePod(t, cp.Client, ns, "theirs", "reports-b", "cm", "sec")
	ctx := context.Background()
	<-e.Ready()
	if err := e.Hub.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	get := func(name string) *corev1.Pod {
		p, err := cp.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	mine, theirs := get("mine"), get("theirs")

	// Status of its own pod is written; PodScheduled (the scheduler's, here
	// absent) and conditions the edge does not own are left alone.
	e.Up.PodStatus(ns, "mine", mine.UID, runningStatus(time.Now()))
	waitFor(t, 30*time.Second, "pod status in the API", func() (bool, error) {
		p := get("mine")
		return p.Status.Phase == corev1.PodRunning && p.Status.PodIP == "10.88.0.7" && len(p.Status.ContainerStatuses) == 1, nil
	})
	// Another node's pod: refused, unchanged.
	e.Up.PodStatus(ns, "theirs", theirs.UID, runningStatus(time.Now()))
	// A pod that was recreated (other uid): refused.
	e.Up.PodStatus(ns, "mine", "0000-stale-uid", corev1.PodStatus{Phase: corev1.PodFailed})
	waitFor(t, 30*time.Second, "two refusals", func() (bool, error) {
		return c.Pods.Stats().Refused >= 2 && e.Up.Stats().Pending == 0, nil
	})
	if p := get("theirs"); p.Status.Phase == corev1.PodRunning {
		t.Fatal("a node wrote the status of another node's pod")
	}
	if p := get("mine"); p.Status.Phase != corev1.PodRunning {
		t.Fatalf("a stale uid changed the pod's phase to %s", p.Status.Phase)
	}

	// Events about its own pod are recorded with the node as source.
	e.Up.Event(&corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mine.started"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: "mine", UID: mine.UID},
		Reason:         "Started", Message: "Started container app", Type: corev1.EventTypeNormal})
	e.Up.Event(&corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "theirs.started"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: "theirs"}, Reason: "Started"})
	waitFor(t, 30*time.Second, "the event", func() (bool, error) {
		ev, err := cp.Client.CoreV1().Events(ns).Get(ctx, "mine.started", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return ev.Source.Host == "reports-a" && ev.Reason == "Started", nil
	})
	if _, err := cp.Client.CoreV1().Events(ns).Get(ctx, "theirs.started", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("event about another node's pod: %v", err)
	}

	// Tokens: for its own pod's service account, bound to the pod.
	exp := int64(3600)
	req := authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences: []string{"https://kubernetes.default.svc.cluster.local"}, ExpirationSeconds: &exp,
		BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: "mine", UID: mine.UID}}}
	var answer wire.Message
	waitFor(t, 60*time.Second, "a token (the default service account may not exist yet)", func() (bool, error) {
		m, err := e.Up.Query(ctx, wire.Resource{Namespace: ns, Type: wire.TypeServiceAccountToken, Name: "default"}, req)
		answer = m
		return err == nil, err
	})
	var got authenticationv1.TokenRequest
	if err := uplink.DecodeContent(answer, &got); err != nil || got.Status.Token == "" || got.Status.ExpirationTimestamp.Before(&metav1.Time{Time: time.Now()}) {
		t.Fatalf("token answer %+v (%v)", got.Status, err)
	}
	req.Spec.BoundObjectRef.Name, req.Spec.BoundObjectRef.UID = "theirs", theirs.UID
	if _, err := e.Up.Query(ctx, wire.Resource{Namespace: ns, Type: wire.TypeServiceAccountToken, Name: "default"}, req); !errors.Is(err, uplink.ErrRefused) {
		t.Errorf("token for another node's pod: %v, want refused", err)
	}

	// Final deletion: refused while the pod is not being deleted, done once it is.
	e.Up.PodTerminated(ns, "mine", mine.UID)
	waitFor(t, 30*time.Second, "refusal of an early deletion", func() (bool, error) {
		return e.Up.Stats().Pending == 0, nil
	})
	get("mine") // still there
	if err := cp.Client.CoreV1().Pods(ns).Delete(ctx, "mine", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if p := get("mine"); p.DeletionTimestamp == nil {
		t.Fatal("pod has no deletionTimestamp after a graceful delete")
	}
	e.Up.PodTerminated(ns, "mine", mine.UID)
	waitFor(t, 30*time.Second, "the pod to be gone", func() (bool, error) {
		_, err := cp.Client.CoreV1().Pods(ns).Get(ctx, "mine", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}
