package config

import (
	"strings"
	"testing"
)

func TestCloudStreamValidate(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("default: %v", err)
	}
	c.Modules.CloudStream.Enable = true
	if err := c.Validate(); err != nil {
		t.Fatalf("enabled defaults: %v", err)
	}
	c.Modules.CloudStream.Address = "nowhere"
	c.Modules.CloudStream.TunnelPort = 0
	c.Modules.CloudStream.StreamPort = 0
	c.Modules.CloudStream.ClaimTimeoutSeconds = -1
	err := c.Validate()
	for _, want := range []string{`modules.cloudStream.address: "nowhere" is not an IP address`, "modules.cloudStream.tunnelPort: port 0",
		"modules.cloudStream.streamPort: must differ from tunnelPort", "modules.cloudStream.claimTimeoutSeconds: must be greater than 0"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %q", err, want)
		}
	}
	if got := DefaultCloudStream(); got.TunnelHostPort() != "0.0.0.0:10004" || got.StreamHostPort() != "0.0.0.0:10003" {
		t.Errorf("default addresses %s %s", got.TunnelHostPort(), got.StreamHostPort())
	}
}
