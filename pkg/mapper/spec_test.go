package mapper

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	pb "github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1"
	"github.com/kubeedge-go/kubeedge/pkg/mapper/mappertest"
)

func TestDesiredOf(t *testing.T) {
	d := mappertest.MustDevice(t, "default", "d", "m", "fake", map[string]any{"addr": "a"}, thermoProps...)
	// KubeEdge's edgecore may carry desired values only in the status
	// twins; the spec wins where both are set.
	d.Status = &pb.DeviceStatus{Twins: []*pb.Twin{
		{PropertyName: "temperature", ObservedDesired: &pb.TwinProperty{Value: "1"}},
		{PropertyName: "setpoint", ObservedDesired: &pb.TwinProperty{Value: "9"}},
	}}
	if diff := cmp.Diff(map[string]string{"temperature": "1", "setpoint": "5"}, desiredOf(d)); diff != "" {
		t.Errorf("desiredOf (-want +got):\n%s", diff)
	}
	upd, _ := mappertest.WithDesired(d, "setpoint", "6")
	if !sameButDesired(d, upd) {
		t.Error("a desired-only change counts as a spec change")
	}
	upd.Spec.Properties[0].CollectCycle = 7
	if sameButDesired(d, upd) {
		t.Error("a collectCycle change counts as desired-only")
	}
}

func TestCycle(t *testing.T) {
	if got := cycle(0, time.Second, 10*time.Millisecond); got != time.Second {
		t.Errorf("default %v", got)
	}
	if got := cycle(1000, time.Second, 10*time.Millisecond); got != 10*time.Millisecond {
		t.Errorf("floor %v", got)
	}
	if got := cycle(int64(10*time.Second), time.Second, 10*time.Millisecond); got != 10*time.Second {
		t.Errorf("nanoseconds %v", got)
	}
}
