package devicecontroller

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/kubeedge-go/kubeedge/internal/testenv"
	"github.com/kubeedge-go/kubeedge/pkg/apis/devices/v1beta1"
)

// TestCRDCopiesIdentical keeps build/crds/devices (for kubectl users)
// byte-identical to the embedded manifests.
func TestCRDCopiesIdentical(t *testing.T) {
	embedded, _ := filepath.Glob("crds/*.yaml")
	copies, _ := filepath.Glob("../../../build/crds/devices/*.yaml")
	base := func(ps []string) (out []string) {
		for _, p := range ps {
			out = append(out, filepath.Base(p))
		}
		return out
	}
	if diff := cmp.Diff(base(embedded), base(copies)); diff != "" || len(embedded) != 2 {
		t.Fatalf("CRD files differ (-embedded +build):\n%s", diff)
	}
	for _, p := range embedded {
		a, _ := os.ReadFile(p)
		b, _ := os.ReadFile(filepath.Join("../../../build/crds/devices", filepath.Base(p)))
		if !bytes.Equal(a, b) {
			t.Errorf("build/crds/devices/%s differs from internal/cloud/devicecontroller/%s: copy it over", filepath.Base(p), p)
		}
	}
	crds, err := CRDs()
	if err != nil || len(crds) != 2 {
		t.Fatalf("CRDs: %d %v", len(crds), err)
	}
}

// TestExamplesApply installs the CRDs in a real apiserver and applies
// KubeEdge's published example manifests unchanged with kubectl; then reads
// them back into the Go types and checks invalid objects are refused.
func TestExamplesApply(t *testing.T) {
	cp := testenv.ControlPlaneForTest(t, testenv.ControlPlaneOptions{})
	dyn, err := dynamic.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := InstallCRDs(ctx, dyn); err != nil {
		t.Fatal(err)
	}
	// Installing twice is harmless.
	if err := InstallCRDs(ctx, dyn); err != nil {
		t.Fatal(err)
	}
	bin, err := testenv.DefaultBinDir()
	if err != nil {
		t.Fatal(err)
	}
	kubectl := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(bin, "kubectl"), append([]string{"--kubeconfig", cp.Kubeconfig}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	examples, _ := filepath.Glob("../../../build/crds/devices/examples/*.yaml")
	if len(examples) < 6 {
		t.Fatalf("found %d examples", len(examples))
	}
	// Models first, so that the order of files does not matter to a reader.
	for _, pass := range []string{"model", "device.yaml"} {
		for _, p := range examples {
			if !strings.Contains(filepath.Base(p), pass) {
				continue
			}
			if out, err := kubectl("", "apply", "-n", "default", "-f", p); err != nil {
				t.Fatalf("kubectl apply -f %s: %v\n%s", filepath.Base(p), err, out)
			}
		}
	}
	out, err := kubectl("", "get", "devices,devicemodels", "-n", "default", "-o", "name")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"device.devices.kubeedge.io/beta1-device", "device.devices.kubeedge.io/modbus-instance-01", "device.devices.kubeedge.io/opcua-device", "devicemodel.devices.kubeedge.io/beta1-model"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl get lacks %s:\n%s", want, out)
		}
	}
	u, err := dyn.Resource(v1beta1.DevicesResource).Namespace("default").Get(ctx, "beta1-device", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dev, err := deviceFrom(u)
	if err != nil {
		t.Fatal(err)
	}
	if dev.Spec.NodeName != "worker-node1" || dev.ModelName() != "beta1-model" || dev.Spec.Properties[0].Desired.Value != "30" ||
		dev.Spec.Properties[0].CollectCycle != 10000000000 || dev.Spec.Protocol.ConfigData.Data["ip"] != "172.17.0.3" ||
		dev.Spec.Properties[0].Visitors.ConfigData.Data["register"] != "HoldingRegister" {
		t.Errorf("beta1-device read back as %+v", dev.Spec)
	}
	// Schema validation refuses what KubeEdge's schema refuses.
	for _, bad := range []string{
		"apiVersion: devices.kubeedge.io/v1beta1\nkind: DeviceModel\nmetadata: {name: bad1}\nspec: {properties: [{name: p, type: COMPLEX}]}\n",
		"apiVersion: devices.kubeedge.io/v1beta1\nkind: DeviceModel\nmetadata: {name: bad2}\nspec: {properties: [{name: p, accessMode: WriteOnly}]}\n",
		"apiVersion: devices.kubeedge.io/v1beta1\nkind: Device\nmetadata: {name: bad3}\nspec: {properties: [{name: p, desired: {metadata: {a: b}}}]}\n",
		"apiVersion: devices.kubeedge.io/v1beta1\nkind: Device\nmetadata: {name: bad4}\nspec: {properties: [{name: p, reportCycle: ten}]}\n",
	} {
		if out, err := kubectl(bad, "apply", "-n", "default", "-f", "-"); err == nil {
			t.Errorf("accepted invalid object:\n%s\n%s", bad, out)
		}
	}
}
