package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	cloudconfig "github.com/kubeedge-go/kubeedge/internal/cloud/config"
	"github.com/kubeedge-go/kubeedge/internal/pki"
)

func nodeReady(client kubernetes.Interface, name string) (bool, error) {
	n, err := client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	if _, ok := n.Labels["node-role.kubernetes.io/edge"]; !ok {
		return false, fmt.Errorf("node %s has no edge label: %v", name, n.Labels)
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue, fmt.Errorf("Ready=%s (%s)", c.Status, c.Reason)
		}
	}
	return false, fmt.Errorf("node %s has no Ready condition", name)
}

// TestJoinAndReady covers joining over both transports: a valid token gets a
// certificate, the session's identity is the certificate's, and the node is
// Ready with the edge label and a renewed Lease.
func TestJoinAndReady(t *testing.T) {
	cp := controlPlane(t)
	c := startCloud(t, cp, freePorts(t))
	tok := token(t, cp.Client)
	for _, transport := range []string{"websocket", "quic"} {
		t.Run(transport, func(t *testing.T) {
			name := "join-" + transport
			e := startEdge(t, edgeConfig(t, t.TempDir(), name, c.ports, tok, transport))
			waitFor(t, 30*time.Second, "node "+name+" Ready", func() (bool, error) { return nodeReady(cp.Client, name) })
			waitFor(t, 10*time.Second, "its lease", func() (bool, error) {
				l, err := cp.Client.CoordinationV1().Leases("kube-node-lease").Get(context.Background(), name, metav1.GetOptions{})
				if err != nil {
					return false, err
				}
				return l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == name && l.Spec.RenewTime != nil, nil
			})
			s := c.Hub.Session(name)
			if s == nil || s.Transport() != transport {
				t.Fatalf("session of %s = %v, want one over %s", name, s, transport)
			}
			e.stop()
			waitFor(t, 10*time.Second, "the session to end", func() (bool, error) { return c.Hub.Session(name) == nil, nil })
		})
	}
}

// TestNotReadyAndBack: a stopped edge goes NotReady after the controller
// manager's grace period (20 s here); a restarted one is Ready again.
func TestNotReadyAndBack(t *testing.T) {
	cp := controlPlane(t)
	c := startCloud(t, cp, freePorts(t))
	dir := t.TempDir()
	cfg := edgeConfig(t, dir, "flap", c.ports, token(t, cp.Client), "websocket")
	e := startEdge(t, cfg)
	waitFor(t, 30*time.Second, "Ready", func() (bool, error) { return nodeReady(cp.Client, "flap") })
	e.stop()
	start := time.Now()
	waitFor(t, 90*time.Second, "NotReady", func() (bool, error) {
		ready, err := nodeReady(cp.Client, "flap")
		return !ready && err != nil, nil
	})
	t.Logf("NotReady %s after the edge stopped", time.Since(start).Round(time.Second))
	startEdge(t, cfg) // same certificates and database
	waitFor(t, 30*time.Second, "Ready again", func() (bool, error) { return nodeReady(cp.Client, "flap") })
}

// TestCloudcoreRestartReconnects: every edge comes back to a restarted cloudcore.
func TestCloudcoreRestartReconnects(t *testing.T) {
	cp := controlPlane(t)
	p := freePorts(t)
	c := startCloud(t, cp, p)
	tok := token(t, cp.Client)
	var edges []*edge
	for i, transport := range []string{"websocket", "quic", "websocket"} {
		edges = append(edges, startEdge(t, edgeConfig(t, t.TempDir(), fmt.Sprintf("rc-%d", i), p, tok, transport)))
	}
	waitFor(t, 30*time.Second, "3 sessions", func() (bool, error) { return c.Hub.SessionCount() == 3, nil })
	c.stop()
	restarted := time.Now()
	c2 := startCloud(t, cp, p)
	waitFor(t, 30*time.Second, "3 sessions on the new cloudcore", func() (bool, error) { return c2.Hub.SessionCount() == 3, nil })
	t.Logf("all edges reconnected %s after the restart began", time.Since(restarted).Round(time.Millisecond))
	for _, e := range edges {
		if e.Hub.Connects() < 2 {
			t.Fatalf("%s connected %d times, want 2", e.cfg.NodeName(), e.Hub.Connects())
		}
		waitFor(t, 30*time.Second, e.cfg.NodeName()+" Ready", func() (bool, error) { return nodeReady(cp.Client, e.cfg.NodeName()) })
	}
}

// TestTwoCloudcoresOneCA: two cloudcores starting together against an empty
// namespace end with one CA, and each verifies the other's certificates.
func TestTwoCloudcoresOneCA(t *testing.T) {
	cp := controlPlane(t)
	useNS := func(cfg *cloudconfig.CloudCore) { cfg.Modules.CloudHub.Namespace = "race-ca" }
	var clouds [2]*cloud
	errs := make(chan error, 2)
	for i := range clouds {
		p := freePorts(t)
		go func() {
			var err error
			clouds[i], err = launchCloud(t, cp, p, useNS)
			errs <- err
		}()
	}
	for range clouds {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	h0, h1 := clouds[0].Material.CA.Hash(), clouds[1].Material.CA.Hash()
	if h0 != h1 {
		t.Fatalf("two CAs: %s and %s", h0, h1)
	}
	s, err := cp.Client.CoreV1().Secrets("race-ca").Get(context.Background(), "casecret", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pki.HashCert(s.Data["cadata"]) != h0 {
		t.Fatal("the stored CA is not the one in use")
	}
	// A node joined through one cloudcore can hold a session on the other.
	raceTok, err := pki.NewToken(clouds[0].Material.CA, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	startEdge(t, edgeConfig(t, t.TempDir(), "race-edge", ports{ws: clouds[1].ports.ws, quic: clouds[1].ports.quic, https: clouds[0].ports.https}, raceTok, "websocket"))
	waitFor(t, 30*time.Second, "a session on the second cloudcore", func() (bool, error) { return clouds[1].Hub.Session("race-edge") != nil, nil })
}
