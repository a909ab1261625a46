package config

import (
	"strings"
	"testing"
)

func TestEdgeStreamValidate(t *testing.T) {
	c := Default("edge-1")
	if err := c.Validate(); err != nil {
		t.Fatalf("default: %v", err)
	}
	c.Modules.EdgeStream.Enable = true
	if err := c.Validate(); err != nil {
		t.Fatalf("enabled defaults: %v", err)
	}
	c.Modules.EdgeStream.Server = "no-port"
	c.Modules.EdgeStream.Port = 70000
	c.Modules.EdgeStream.MaxConcurrentTunnels = 0
	err := c.Validate()
	for _, want := range []string{`modules.edgeStream.server: "no-port" is not host:port`, "modules.edgeStream.port: port 70000",
		"modules.edgeStream.maxConcurrentTunnels: must be greater than 0"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %q", err, want)
		}
	}
}
