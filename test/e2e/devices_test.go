package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	modbusclient "github.com/simonvetter/modbus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/kubeedge-go/kubeedge/internal/testenv"
	"github.com/kubeedge-go/kubeedge/pkg/apis/devices/v1beta1"
)

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// twinGet asks the edge's MQTT broker for a device's twin, as a device app
// does, and returns the actual value of prop with its timestamp.
func twinGet(t *testing.T, broker, id, prop string) (value string, ts int64, err error) {
	t.Helper()
	cl := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID(fmt.Sprintf("e2e-app-%d", time.Now().UnixNano())))
	if tok := cl.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		return "", 0, fmt.Errorf("connect %s: %v", broker, tok.Error())
	}
	defer cl.Disconnect(50)
	got := make(chan []byte, 1)
	if tok := cl.Subscribe("$hw/events/device/"+id+"/twin/get/result", 1, func(_ paho.Client, m paho.Message) {
		select {
		case got <- m.Payload():
		default:
		}
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		return "", 0, fmt.Errorf("subscribe: %v", tok.Error())
	}
	cl.Publish("$hw/events/device/"+id+"/twin/get", 1, false, []byte(`{"event_id":"e2e","timestamp":0}`)).WaitTimeout(5 * time.Second)
	select {
	case b := <-got:
		var res struct {
			Twin map[string]struct {
				Actual *struct {
					Value    string `json:"value"`
					Metadata struct {
						Timestamp int64 `json:"timestamp"`
					} `json:"metadata"`
				} `json:"actual"`
			} `json:"twin"`
		}
		if err := json.Unmarshal(b, &res); err != nil {
			return "", 0, fmt.Errorf("twin/get/result %s: %w", b, err)
		}
		tw, ok := res.Twin[prop]
		if !ok || tw.Actual == nil {
			return "", 0, fmt.Errorf("twin/get/result has no actual %s: %s", prop, b)
		}
		return tw.Actual.Value, tw.Actual.Metadata.Timestamp, nil
	case <-time.After(10 * time.Second):
		return "", 0, fmt.Errorf("no twin/get/result from %s", broker)
	}
}

func deviceStatus(t *testing.T, dyn dynamic.Interface, ns, name string) v1beta1.DeviceStatus {
	t.Helper()
	u, err := dyn.Resource(v1beta1.DevicesResource).Namespace(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var d v1beta1.Device
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err != nil {
		t.Fatal(err)
	}
	return d.Status
}

func reportedTwin(st v1beta1.DeviceStatus, prop string) (string, int64) {
	for _, tw := range st.Twins {
		if tw.PropertyName == prop {
			ts, _ := strconv.ParseInt(tw.Reported.Metadata["timestamp"], 10, 64)
			return tw.Reported.Value, ts
		}
	}
	return "", 0
}

// TestDevicesEndToEnd runs the device path with the real binaries: cloudcore,
// edgecore (keadm join), the Modbus mapper and a simulated Modbus
// thermostat. The thermostat's twin reaches Device.status; a device app
// reads it over MQTT; with cloudcore down, the twin keeps updating locally,
// a desired value changed in the cloud meanwhile reaches the device after
// reconnect, and an edgecore killed with SIGKILL loses no reported value it
// had accepted.
func TestDevicesEndToEnd(t *testing.T) {
	tl := findTools(t)
	mapperBin := filepath.Join(filepath.Dir(tl.edgecore), "mapper")
	testenv.Require(t, executable(mapperBin), "mapper binary not built (make build)")
	e := newEnv(t, tl)
	const node, ns = "devices-e2e", "default"

	e.step("control plane and cloudcore")
	cp := testenv.ControlPlaneForTest(t, testenv.ControlPlaneOptions{ControllerManager: true})
	dyn, err := dynamic.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := e.run(30*time.Second, tl.cloudcore, "--defaultconfig")
	if err != nil {
		t.Fatal(err)
	}
	p := freePorts(t)
	cloudArgs := []string{"--config", writeCloudConfig(t, []byte(out), filepath.Join(e.work, "cloudcore.yaml"), cp.Kubeconfig, p)}
	startCloud := func(n int) *child {
		c := e.start("cloudcore", filepath.Join(e.work, fmt.Sprintf("cloudcore-%d.log", n)), tl.cloudcore, cloudArgs...)
		e.waitFor(60*time.Second, "cloudcore ready", func() (bool, error) { return countFrom(c.log, 0, cloudReady) > 0, nil })
		return c
	}
	cloud := startCloud(1)

	e.step("keadm join (no container runtime needed), the Modbus mapper and the thermostat")
	var token string
	e.waitFor(60*time.Second, "the join token", func() (bool, error) {
		out, _, err := e.run(20*time.Second, tl.keadm, "gettoken", "--kube-config", cp.Kubeconfig)
		token = strings.TrimSpace(out)
		return err == nil && token != "", err
	})
	dir, err := os.MkdirTemp("", "kedev") // short: it holds unix sockets
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	edgeConfig, edgeLog := filepath.Join(dir, "edgecore.yaml"), filepath.Join(dir, "edgecore.log")
	e.showLog(edgeLog)
	mqttPort := freeTCPPort(t)
	broker := fmt.Sprintf("tcp://127.0.0.1:%d", mqttPort)
	if out, errOut, err := e.run(120*time.Second, tl.keadm, "join",
		fmt.Sprintf("--cloudcore-ipport=127.0.0.1:%d", p.ws), fmt.Sprintf("--certport=%d", p.https),
		fmt.Sprintf("--quicport=%d", p.quic), "--token="+token, "--edgenode-name="+node, "--node-ip=127.0.0.1",
		"--data-dir="+dir, "--config="+edgeConfig, "--edgecore-binary="+tl.edgecore,
		"--set", "modules.edged.enable=false",
		"--set", "modules.metaManager.metaServer.server=127.0.0.1:0",
		"--set", "modules.eventBus.mqttServerInternal="+broker); err != nil {
		t.Fatalf("keadm join: %v\n%s%s", err, out, errOut)
	}
	edge := trackEdgecore(t, e, filepath.Join(dir, "edgecore.pid"), edgeConfig)
	e.waitFor(60*time.Second, node+" Ready", func() (bool, error) { return nodeReady(t.Context(), cp.Client, node) })
	simPort := freeTCPPort(t)
	e.start("thermostat", filepath.Join(e.work, "thermostat.log"), mapperBin, "simulate-modbus", "--listen", fmt.Sprintf("127.0.0.1:%d", simPort))
	e.start("modbus mapper", filepath.Join(e.work, "mapper.log"), mapperBin, "modbus",
		"--edgecore-socket", filepath.Join(dir, "dmi.sock"), "--socket", filepath.Join(dir, "modbus.sock"), "--health-addr", "")

	e.step("a DeviceModel and a Device for the thermostat, applied with kubectl")
	manifest, err := os.ReadFile(filepath.Join(repoRoot(t), "build", "demo", "thermostat.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := strings.ReplaceAll(string(manifest), "nodeName: edge-node", "nodeName: "+node)
	m = strings.ReplaceAll(m, "port: 1502", fmt.Sprintf("port: %d", simPort))
	mf := filepath.Join(e.work, "thermostat.yaml")
	if err := os.WriteFile(mf, []byte(m), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, err := e.run(60*time.Second, tl.kubectl, "--kubeconfig", cp.Kubeconfig, "apply", "-f", mf); err != nil {
		t.Fatalf("kubectl apply: %v\n%s%s", err, out, errOut)
	}
	e.waitFor(90*time.Second, "the thermostat's temperature in Device.status", func() (bool, error) {
		v, _ := reportedTwin(deviceStatus(t, dyn, ns, "thermostat-1"), "temperature")
		return v != "", nil
	})
	modbus, err := modbusclient.NewClient(&modbusclient.ClientConfiguration{URL: fmt.Sprintf("tcp://127.0.0.1:%d", simPort), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := modbus.Open(); err != nil {
		t.Fatal(err)
	}
	defer modbus.Close()
	setpoint := func() (uint16, error) { return modbus.ReadRegister(1, modbusclient.HOLDING_REGISTER) }
	e.waitFor(30*time.Second, "the manifest's desired setpoint (23) at the device", func() (bool, error) {
		v, err := setpoint()
		return err == nil && v == 23, err
	})
	id := ns + "/thermostat-1"
	if _, _, err := twinGet(t, broker, id, "temperature"); err != nil {
		t.Fatalf("a device app's twin/get: %v", err)
	}

	e.step("cloudcore stops: the twin keeps updating locally; a desired change is made in the cloud meanwhile")
	if err := e.stop(cloud, 30*time.Second); err != nil {
		t.Logf("cloudcore exited with %v", err)
	}
	_, ts0, err := twinGet(t, broker, id, "temperature")
	if err != nil {
		t.Fatal(err)
	}
	var lastValue string
	var lastTS int64
	e.waitFor(30*time.Second, "newer local reports while the cloud is down", func() (bool, error) {
		v, ts, err := twinGet(t, broker, id, "temperature")
		lastValue, lastTS = v, ts
		return err == nil && ts > ts0, err
	})
	patch := `[{"op":"replace","path":"/spec/properties/1/desired/value","value":"31"}]`
	if _, err := dyn.Resource(v1beta1.DevicesResource).Namespace(ns).Patch(t.Context(), "thermostat-1", types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}

	e.step("edgecore is killed (SIGKILL) and started again, the cloud still down: nothing it accepted is lost")
	if err := syscall.Kill(edge.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.waitFor(30*time.Second, "edgecore to be gone", func() (bool, error) { return !running(edge.pid, edge.args), nil })
	e.start("edgecore (after SIGKILL)", edgeLog, tl.edgecore, "--config", edgeConfig)
	e.waitFor(60*time.Second, "the twin from before the kill, or newer, over MQTT", func() (bool, error) {
		v, ts, err := twinGet(t, broker, id, "temperature")
		if err == nil && ts < lastTS {
			t.Fatalf("after the restart the twin is older (%s at %d) than what the edge had accepted (%s at %d)", v, ts, lastValue, lastTS)
		}
		return err == nil, err
	})

	e.step("cloudcore returns: the desired value reaches the device, the newest reports reach Device.status")
	startCloud(2)
	e.waitFor(60*time.Second, "the desired setpoint changed during the outage (31) at the device", func() (bool, error) {
		v, err := setpoint()
		return err == nil && v == 31, err
	})
	e.waitFor(60*time.Second, "a report at least as new as the last one before the kill in Device.status", func() (bool, error) {
		_, ts := reportedTwin(deviceStatus(t, dyn, ns, "thermostat-1"), "temperature")
		return ts >= lastTS, fmt.Errorf("status timestamp %d, want ≥ %d", ts, lastTS)
	})
	e.waitFor(60*time.Second, "the setpoint reported back as 31", func() (bool, error) {
		v, _ := reportedTwin(deviceStatus(t, dyn, ns, "thermostat-1"), "setpoint")
		return v == "31", fmt.Errorf("setpoint %q", v)
	})
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := testenv.RepoRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	return root
}
