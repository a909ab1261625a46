package opcua

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"

	"github.com/kubeedge-go/kubeedge/internal/testenv/devicepeers"
	pb "github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1"
	"github.com/kubeedge-go/kubeedge/pkg/mapper"
	"github.com/kubeedge-go/kubeedge/pkg/mapper/mappertest"
)

const wait = 60 * time.Second

func runMapper(t *testing.T, ec *mappertest.Edgecore, dir string) {
	t.Helper()
	cfg := mapper.Default(Protocol)
	cfg.SocketPath = filepath.Join(dir, "opcua.sock")
	cfg.EdgecoreSocket = ec.Socket
	cfg.RetryMin, cfg.RetryMax = 100*time.Millisecond, time.Second
	cfg.DefaultCollectCycle, cfg.DefaultReportCycle = 200*time.Millisecond, 200*time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := mapper.New(cfg, New())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("mapper: %v", err)
		}
	})
}

func reported(ec *mappertest.Edgecore, dev, prop string, ok func(string) bool, what string) func() (bool, string) {
	return func() (bool, string) {
		v, e := ec.Reported("default", dev, prop)
		return e == "" && ok(v), fmt.Sprintf("%s.%s = %q (error %q), want %s", dev, prop, v, e, what)
	}
}

func is(want string) (func(string) bool, string) {
	return func(s string) bool { return s == want }, fmt.Sprintf("%q", want)
}

func errorHas(ec *mappertest.Edgecore, dev, prop string, observed bool, want ...string) func() (bool, string) {
	return func() (bool, string) {
		tw, _ := ec.Twin("default", dev, prop)
		e := tw.GetReported().GetMetadata()["error"]
		if observed {
			e = tw.GetObservedDesired().GetMetadata()["error"]
		}
		for _, w := range want {
			if !strings.Contains(e, w) {
				return false, fmt.Sprintf("%s.%s error %q lacks %q", dev, prop, e, w)
			}
		}
		return true, ""
	}
}

func stateIn(ec *mappertest.Edgecore, dev string, want ...mapper.State) func() (bool, string) {
	return func() (bool, string) {
		s := ec.State("default", dev)
		for _, w := range want {
			if s == string(w) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%s state %q, want %v", dev, s, want)
	}
}

// readNode reads a node with an independent client.
func readNode(t *testing.T, endpoint, node string) (any, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := opcua.NewClient(endpoint, opcua.SecurityMode(ua.MessageSecurityModeNone), opcua.AutoReconnect(false))
	if err != nil {
		return nil, err
	}
	if err := c.Connect(ctx); err != nil {
		return nil, err
	}
	defer c.Close(ctx)
	id, _ := ua.ParseNodeID(node)
	resp, err := c.Read(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: id, AttributeID: ua.AttributeIDValue}}})
	if err != nil {
		return nil, err
	}
	if resp.Results[0].Status != ua.StatusOK {
		return nil, resp.Results[0].Status
	}
	return resp.Results[0].Value.Value(), nil
}

func TestOPCUAEndToEnd(t *testing.T) {
	srv := devicepeers.StartOPCUA(t)
	dir := devicepeers.ShortDir(t)
	ec := mappertest.StartEdgecore(t, dir)
	props := []mappertest.Prop{
		{Name: "temperature", Type: "DOUBLE", Access: "ReadOnly", Visitor: map[string]any{"nodeID": "ns=1;s=Temperature"}},
		{Name: "setpoint", Type: "INT", Visitor: map[string]any{"nodeID": "ns=1;s=Setpoint"}, Desired: "33"},
		{Name: "name", Type: "STRING", Access: "ReadOnly", Visitor: map[string]any{"nodeID": "ns=1;s=Name"}},
		{Name: "counter", Type: "INT", Visitor: map[string]any{"nodeID": "ns=1;s=Counter", "subscribe": true, "samplingInterval": 50.0}, CollectCycle: time.Hour},
		{Name: "flag", Type: "BOOLEAN", Visitor: map[string]any{"nodeID": "ns=1;s=Flag"}, Desired: "true"},
		// The model says ReadWrite, the server says no.
		{Name: "rename", Type: "STRING", Visitor: map[string]any{"nodeID": "ns=1;s=Name"}, Desired: "pump-2"},
		{Name: "missing", Type: "INT", Access: "ReadOnly", Visitor: map[string]any{"nodeID": "ns=1;s=NoSuchNode"}},
	}
	model := mappertest.Model("default", "pump", props...)
	dev := mappertest.MustDevice(t, "default", "pump1", "pump", Protocol, map[string]any{"url": srv.URL()}, props...)
	ec.SetDevices([]*pb.DeviceModel{model}, []*pb.Device{dev})
	runMapper(t, ec, dir)

	mappertest.Eventually(t, wait, reported(ec, "pump1", "temperature", func(s string) bool { return strings.HasPrefix(s, "21.5") }, "about 21.5"))
	f, w := is("pump-1")
	mappertest.Eventually(t, wait, reported(ec, "pump1", "name", f, w))
	f, w = is("33")
	mappertest.Eventually(t, wait, reported(ec, "pump1", "setpoint", f, w))
	f, w = is("true")
	mappertest.Eventually(t, wait, reported(ec, "pump1", "flag", f, w))
	// The desired value is on the server (independent client).
	mappertest.Eventually(t, wait, func() (bool, string) {
		v, err := readNode(t, srv.URL(), "ns=1;s=Setpoint")
		return err == nil && v == int32(33), fmt.Sprintf("Setpoint %v %v", v, err)
	})
	// Writing a read-only node: BadNotWritable, reported on the twin.
	mappertest.Eventually(t, wait, errorHas(ec, "pump1", "rename", true, "StatusBadNotWritable", "ns=1;s=Name"))
	mappertest.Eventually(t, wait, errorHas(ec, "pump1", "missing", false, "StatusBadNodeIDUnknown"))
	// The subscription delivers changes.
	first := ""
	mappertest.Eventually(t, wait, func() (bool, string) {
		first, _ = ec.Reported("default", "pump1", "counter")
		return first != "", "no counter value"
	})
	mappertest.Eventually(t, wait, reported(ec, "pump1", "counter", func(s string) bool { return s != first }, "a new value"))

	// UpdateDevice: the new desired value reaches the server.
	upd, _ := mappertest.WithDesired(dev, "setpoint", "-12")
	if _, err := ec.Mapper(t).UpdateDevice(context.Background(), &pb.UpdateDeviceRequest{Device: upd}); err != nil {
		t.Fatal(err)
	}
	mappertest.Eventually(t, wait, func() (bool, string) {
		v, err := readNode(t, srv.URL(), "ns=1;s=Setpoint")
		return err == nil && v == int32(-12), fmt.Sprintf("Setpoint %v %v", v, err)
	})

	// The server restarts (every session dropped): the device goes
	// disconnected/offline, then reconnects with a new session and a new
	// subscription; the server lost the setpoint, the mapper writes it again.
	srv.Process.Stop()
	mappertest.Eventually(t, wait, stateIn(ec, "pump1", mapper.StateDisconnected, mapper.StateOffline))
	srv.Restart()
	mappertest.Eventually(t, wait, stateIn(ec, "pump1", mapper.StateUnhealthy)) // "missing" keeps it unhealthy
	before, _ := ec.Reported("default", "pump1", "counter")
	mappertest.Eventually(t, wait, reported(ec, "pump1", "counter", func(s string) bool { return s != before }, "counting again"))
	f, w = is("-12")
	mappertest.Eventually(t, wait, reported(ec, "pump1", "setpoint", f, w))
}

// clientCert writes a self-signed client certificate with the application
// URI in its SAN, as OPC-UA wants.
func clientCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	uri, _ := url.Parse("urn:kubeedge-go:mapper-test")
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "kubeedge-go mapper test", Organization: []string{"kubeedge-go"}},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment | x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{uri},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestOPCUASecurity(t *testing.T) {
	srv := devicepeers.StartOPCUA(t)
	dir := devicepeers.ShortDir(t)
	cert, key := clientCert(t, dir)
	ec := mappertest.StartEdgecore(t, dir)
	props := []mappertest.Prop{
		{Name: "name", Type: "STRING", Access: "ReadOnly", Visitor: map[string]any{"nodeID": "ns=1;s=Name"}},
		{Name: "setpoint", Type: "INT", Visitor: map[string]any{"nodeID": "ns=1;s=Setpoint"}, Desired: "55"},
	}
	model := mappertest.Model("default", "pump", props...)
	secure := func(name, mode string, extra map[string]any, p ...mappertest.Prop) *pb.Device {
		cfg := map[string]any{"url": srv.URL(), "securityPolicy": "Basic256Sha256", "securityMode": mode, "certFile": cert, "keyFile": key}
		for k, v := range extra {
			cfg[k] = v
		}
		return mappertest.MustDevice(t, "default", name, "pump", Protocol, cfg, p...)
	}
	ec.SetDevices([]*pb.DeviceModel{model}, []*pb.Device{
		secure("encrypted-user", "SignAndEncrypt", map[string]any{"username": "operator", "password": "s3cret"}, props...),
		secure("signed-anonymous", "Sign", nil, props[0]),
		secure("wrong-password", "SignAndEncrypt", map[string]any{"username": "operator", "password": "guess"}, props[0]),
		mappertest.MustDevice(t, "default", "plain-user", "pump", Protocol, map[string]any{"url": srv.URL(), "username": "operator", "password": "s3cret"}, props[0]),
	})
	runMapper(t, ec, dir)

	f, w := is("pump-1")
	for _, d := range []string{"encrypted-user", "signed-anonymous", "plain-user"} {
		mappertest.Eventually(t, wait, reported(ec, d, "name", f, w))
		mappertest.Eventually(t, wait, stateIn(ec, d, mapper.StateOK))
	}
	mappertest.Eventually(t, wait, func() (bool, string) {
		v, err := readNode(t, srv.URL(), "ns=1;s=Setpoint")
		return err == nil && v == int32(55), fmt.Sprintf("Setpoint %v %v", v, err)
	})
	mappertest.Eventually(t, wait, stateIn(ec, "wrong-password", mapper.StateOffline))
	mappertest.Eventually(t, wait, errorHas(ec, "wrong-password", "name", false, "connect (Basic256Sha256, SignAndEncrypt)"))
}
