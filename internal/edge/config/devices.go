package config

import (
	"net"
	"net/url"
	"path/filepath"

	"github.com/kubeedge-go/kubeedge/internal/config"
)

// EventBus is the MQTT side (KubeEdge's field names).
type EventBus struct {
	Enable bool `json:"enable"`
	// MqttMode: 0 internal broker, 1 both, 2 external broker.
	MqttMode int `json:"mqttMode"`
	// MqttServerInternal is where the embedded broker listens.
	MqttServerInternal string `json:"mqttServerInternal"`
	// MqttServerExternal is the external broker (e.g. Mosquitto).
	MqttServerExternal string `json:"mqttServerExternal"`
	// MqttQOS of subscriptions and results (0 or 1).
	MqttQOS         int    `json:"mqttQOS"`
	MqttSubClientID string `json:"mqttSubClientID"`
	MqttUsername    string `json:"mqttUsername,omitempty"`
	MqttPassword    string `json:"mqttPassword,omitempty"`
}

// DeviceTwin keeps device state and syncs it to the cloud.
type DeviceTwin struct {
	Enable bool `json:"enable"`
	// SyncIntervalMillis is how often unacknowledged reports are sent.
	SyncIntervalMillis int `json:"syncIntervalMillis"`
	// AckTimeoutSeconds is how long a report batch waits for the cloud.
	AckTimeoutSeconds int `json:"ackTimeoutSeconds"`
	// ReportBatch is the most devices per upstream message.
	ReportBatch int `json:"reportBatch"`
}

// DMI is the mapper interface.
type DMI struct {
	Enable bool `json:"enable"`
	// Socket is the unix socket of DeviceManagerService.
	Socket string `json:"socket"`
	// ReportQPS and ReportBurst limit each mapper's reports.
	ReportQPS   float64 `json:"reportQPS"`
	ReportBurst int     `json:"reportBurst"`
}

// DefaultDevices returns the default device sections.
func DefaultDevices() (EventBus, DeviceTwin, DMI) {
	return EventBus{Enable: true, MqttMode: 0, MqttServerInternal: "tcp://127.0.0.1:1884", MqttServerExternal: "tcp://127.0.0.1:1883"},
		DeviceTwin{Enable: true, SyncIntervalMillis: 200, AckTimeoutSeconds: 30, ReportBatch: 500},
		DMI{Enable: true, Socket: "/etc/kubeedge/dmi.sock", ReportQPS: 1000, ReportBurst: 2000}
}

// InternalAddr is the host:port of MqttServerInternal.
func (b EventBus) InternalAddr() string {
	u, err := url.Parse(b.MqttServerInternal)
	if err != nil {
		return ""
	}
	return u.Host
}

func (m Modules) validateDevices(e *config.Errors) {
	b := m.EventBus
	if b.Enable {
		if b.MqttMode < 0 || b.MqttMode > 2 {
			e.Addf("modules.eventBus.mqttMode", "must be 0 (internal), 1 (both) or 2 (external), got %d", b.MqttMode)
		}
		if b.MqttQOS < 0 || b.MqttQOS > 1 {
			e.Addf("modules.eventBus.mqttQOS", "must be 0 or 1, got %d", b.MqttQOS)
		}
		if b.MqttMode != 2 {
			u, err := url.Parse(b.MqttServerInternal)
			if err != nil || u.Scheme != "tcp" {
				e.Addf("modules.eventBus.mqttServerInternal", "%q is not a tcp://host:port URL", b.MqttServerInternal)
			} else if _, _, err := net.SplitHostPort(u.Host); err != nil {
				e.Addf("modules.eventBus.mqttServerInternal", "%q: %v", b.MqttServerInternal, err)
			}
		}
		if b.MqttMode != 0 {
			if u, err := url.Parse(b.MqttServerExternal); err != nil || (u.Scheme != "tcp" && u.Scheme != "ssl" && u.Scheme != "ws") || u.Host == "" {
				e.Addf("modules.eventBus.mqttServerExternal", "%q is not a tcp://, ssl:// or ws:// broker URL", b.MqttServerExternal)
			}
		}
		if !m.DeviceTwin.Enable {
			e.Addf("modules.eventBus", "needs modules.deviceTwin to be enabled")
		}
	}
	t := m.DeviceTwin
	if t.Enable {
		e.CheckPositive("modules.deviceTwin.syncIntervalMillis", int64(t.SyncIntervalMillis))
		e.CheckPositive("modules.deviceTwin.ackTimeoutSeconds", int64(t.AckTimeoutSeconds))
		if t.ReportBatch <= 0 || t.ReportBatch > 1000 {
			e.Addf("modules.deviceTwin.reportBatch", "must be 1 to 1000, got %d", t.ReportBatch)
		}
	}
	d := m.DMI
	if d.Enable {
		if !filepath.IsAbs(d.Socket) || len(d.Socket) > 107 {
			e.Addf("modules.dmi.socket", "%q must be an absolute path of at most 107 bytes", d.Socket)
		}
		if d.ReportQPS <= 0 {
			e.Addf("modules.dmi.reportQPS", "must be greater than 0")
		}
		e.CheckPositive("modules.dmi.reportBurst", int64(d.ReportBurst))
		if !t.Enable {
			e.Addf("modules.dmi", "needs modules.deviceTwin to be enabled")
		}
	}
}
