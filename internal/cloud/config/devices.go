package config

import "github.com/kubeedge-go/kubeedge/internal/config"

// DeviceController delivers devices to their nodes and writes the twins and
// states edges report into Device.status.
type DeviceController struct {
	Enable bool `json:"enable"`
	// StatusQPS and StatusBurst bound Device.status writes of this cloudcore
	// (a token bucket), whatever the number of devices and reports.
	StatusQPS   float64 `json:"statusQPS"`
	StatusBurst int     `json:"statusBurst"`
	// StatusIntervalMillis is the shortest time between two status writes of
	// one device; reports in between are coalesced (the newest wins).
	StatusIntervalMillis int `json:"statusIntervalMillis"`
	Workers              int `json:"workers"`
}

// DefaultDeviceController is the default DeviceController section.
func DefaultDeviceController() DeviceController {
	return DeviceController{Enable: true, StatusQPS: 50, StatusBurst: 100, StatusIntervalMillis: 1000, Workers: 4}
}

func (d DeviceController) validate(e *config.Errors) {
	if !d.Enable {
		return
	}
	if d.StatusQPS <= 0 {
		e.Addf("modules.deviceController.statusQPS", "must be greater than 0")
	}
	e.CheckPositive("modules.deviceController.statusBurst", int64(d.StatusBurst))
	e.CheckPositive("modules.deviceController.statusIntervalMillis", int64(d.StatusIntervalMillis))
	e.CheckPositive("modules.deviceController.workers", int64(d.Workers))
}
