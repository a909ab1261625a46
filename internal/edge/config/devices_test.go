package config

import (
	"strings"
	"testing"
)

func TestDeviceSectionsValidate(t *testing.T) {
	if err := Default("node-a").Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*EdgeCore)
		field  string
	}{
		{"mode", func(c *EdgeCore) { c.Modules.EventBus.MqttMode = 3 }, "modules.eventBus.mqttMode"},
		{"qos", func(c *EdgeCore) { c.Modules.EventBus.MqttQOS = 2 }, "modules.eventBus.mqttQOS"},
		{"internal url", func(c *EdgeCore) { c.Modules.EventBus.MqttServerInternal = "127.0.0.1:1884" }, "modules.eventBus.mqttServerInternal"},
		{"external url", func(c *EdgeCore) {
			c.Modules.EventBus.MqttMode = 2
			c.Modules.EventBus.MqttServerExternal = "mosquitto"
		}, "modules.eventBus.mqttServerExternal"},
		{"bus needs twin", func(c *EdgeCore) { c.Modules.DeviceTwin.Enable = false }, "needs modules.deviceTwin"},
		{"batch", func(c *EdgeCore) { c.Modules.DeviceTwin.ReportBatch = 5000 }, "modules.deviceTwin.reportBatch"},
		{"socket", func(c *EdgeCore) { c.Modules.DMI.Socket = "dmi.sock" }, "modules.dmi.socket"},
		{"qps", func(c *EdgeCore) { c.Modules.DMI.ReportQPS = 0 }, "modules.dmi.reportQPS"},
	} {
		c := Default("node-a")
		tc.mutate(c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.field)
		}
	}
	c := Default("node-a")
	c.Modules.EventBus.Enable, c.Modules.DeviceTwin.Enable, c.Modules.DMI.Enable = false, false, false
	if err := c.Validate(); err != nil {
		t.Errorf("all device modules off: %v", err)
	}
	if got := Default("n").Modules.EventBus.InternalAddr(); got != "127.0.0.1:1884" {
		t.Errorf("InternalAddr = %q", got)
	}
}
