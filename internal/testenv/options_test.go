package testenv

import (
	"strings"
	"testing"
	"time"
)

func TestControlPlaneOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opts ControlPlaneOptions
		want string // substring of the error; empty means valid
	}{
		{"minimal", ControlPlaneOptions{Dir: "d"}, ""},
		{"full", ControlPlaneOptions{Dir: "d", EtcdPort: 12379, EtcdPeerPort: 12380, APIServerPort: 6443,
			ControllerManager: true, Scheduler: true, NodeMonitorGracePeriod: 40 * time.Second,
			ServiceCIDR: "10.97.0.0/16"}, ""},
		{"no dir", ControlPlaneOptions{}, "Dir is empty"},
		{"negative port", ControlPlaneOptions{Dir: "d", EtcdPort: -1}, "EtcdPort -1 is out of range"},
		{"port too big", ControlPlaneOptions{Dir: "d", APIServerPort: 70000}, "APIServerPort 70000 is out of range"},
		{"same ports", ControlPlaneOptions{Dir: "d", EtcdPort: 2379, APIServerPort: 2379}, "EtcdPort and APIServerPort are both 2379"},
		{"negative grace", ControlPlaneOptions{Dir: "d", ControllerManager: true, NodeMonitorGracePeriod: -time.Second},
			"NodeMonitorGracePeriod -1s is negative"},
		{"grace without KCM", ControlPlaneOptions{Dir: "d", NodeMonitorGracePeriod: time.Second},
			"NodeMonitorGracePeriod is set but ControllerManager is not"},
		{"bad cidr", ControlPlaneOptions{Dir: "d", ServiceCIDR: "10.96.0.0"}, `ServiceCIDR "10.96.0.0"`},
		{"host bits", ControlPlaneOptions{Dir: "d", ServiceCIDR: "10.96.0.1/24"}, "not a network address (want 10.96.0.0/24)"},
		{"too small", ControlPlaneOptions{Dir: "d", ServiceCIDR: "10.96.0.0/32"}, "too small"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("validate() = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestPickPortsDistinct(t *testing.T) {
	ports, err := pickPorts(0, 0, 6443, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ports[2] != 6443 {
		t.Errorf("fixed port changed to %d", ports[2])
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("ports %v: want distinct positive ports", ports)
		}
		seen[p] = true
	}
}
