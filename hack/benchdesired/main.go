// Command benchdesired measures, on a running `make up`, the time from a
// desired value patched into a Device in the cloud until the device itself
// holds it: apiserver → cloudcore (DeviceController, delivery) → edgecore
// (MetaManager, DeviceTwin, DMI) → the Modbus mapper → the simulated
// thermostat's holding register, read back by an independent Modbus client.
//
// Usage: go run ./hack/benchdesired [-n 20] [-device thermostat-1] [-modbus 127.0.0.1:1502]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	modbusclient "github.com/simonvetter/modbus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeedge-go/kubeedge/internal/testenv"
	"github.com/kubeedge-go/kubeedge/pkg/apis/devices/v1beta1"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "benchdesired:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	n := flag.Int("n", 20, "desired changes to time")
	device := flag.String("device", "thermostat-1", "Device in namespace default; property 1 must be a holding register")
	addr := flag.String("modbus", "127.0.0.1:1502", "the device's Modbus TCP address")
	register := flag.Int("register", 1, "holding register of the property")
	flag.Parse()
	root, err := testenv.RepoRoot(".")
	if err != nil {
		return err
	}
	rc, err := clientcmd.BuildConfigFromFlags("", filepath.Join(root, "_output", "local", "cluster", "admin.kubeconfig"))
	if err != nil {
		return fmt.Errorf("kubeconfig (is make up running?): %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	mb, err := modbusclient.NewClient(&modbusclient.ClientConfiguration{URL: "tcp://" + *addr, Timeout: 2 * time.Second})
	if err != nil {
		return err
	}
	if err := mb.Open(); err != nil {
		return err
	}
	defer mb.Close()
	var lat []time.Duration
	for i := range *n {
		want := uint16(10 + i%20) // within the thermostat model's 0..40
		if v, _ := mb.ReadRegister(uint16(*register), modbusclient.HOLDING_REGISTER); v == want {
			want++
		}
		patch := fmt.Sprintf(`[{"op":"replace","path":"/spec/properties/1/desired/value","value":"%d"}]`, want)
		start := time.Now()
		if _, err := dyn.Resource(v1beta1.DevicesResource).Namespace("default").Patch(ctx, *device, types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			return err
		}
		for {
			v, err := mb.ReadRegister(uint16(*register), modbusclient.HOLDING_REGISTER)
			if err == nil && v == want {
				break
			}
			if time.Since(start) > 30*time.Second {
				return fmt.Errorf("register %d did not reach %d within 30 s (last %d, %v)", *register, want, v, err)
			}
			time.Sleep(time.Millisecond)
		}
		lat = append(lat, time.Since(start))
		time.Sleep(200 * time.Millisecond) // let the mapper report it back before the next change
	}
	slices.Sort(lat)
	at := func(p int) time.Duration {
		return lat[min(len(lat)-1, (len(lat)*p+99)/100-1)].Round(100 * time.Microsecond)
	}
	fmt.Printf("desired value patched in the cloud → held by the Modbus device, %d changes: p50 %s, p99 %s, max %s\n",
		len(lat), at(50), at(99), lat[len(lat)-1].Round(100*time.Microsecond))
	return nil
}
