package config

import (
	"strings"
	"testing"
)

func TestDeviceControllerValidate(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	c := Default()
	c.Modules.DeviceController.StatusQPS = 0
	c.Modules.DeviceController.StatusIntervalMillis = -1
	err := c.Validate()
	for _, f := range []string{"modules.deviceController.statusQPS", "modules.deviceController.statusIntervalMillis"} {
		if err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("error %v does not name %s", err, f)
		}
	}
	c.Modules.DeviceController.Enable = false
	if err := c.Validate(); err != nil {
		t.Errorf("disabled controller still validated: %v", err)
	}
}
