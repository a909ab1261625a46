package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Device reports travel upstream as one message per batch:
//
//	operation "update", resource "null/twin/{nodeName}",
//	content DeviceReportBatch.
//
// The cloud answers with operation "response" once every device of the
// batch is written into Device.status (or superseded by a newer report that
// was); its content is "OK" or a DeviceReportResult naming refused devices.
// Each report is a full snapshot of one device (every twin), so the cloud can
// coalesce: the newest Seq of a device wins and older ones are dropped.

// Limits of a decoded batch, so that a broken or hostile edge cannot make
// the cloud allocate without bound.
const (
	MaxDevicesPerReport = 1000
	MaxTwinsPerDevice   = 256
	MaxTwinValueBytes   = 64 << 10
	MaxTwinMetadataKeys = 16
)

// ErrBadDeviceReport is wrapped by every DecodeDeviceReport error.
var ErrBadDeviceReport = errors.New("wire: bad device report")

// DeviceReportBatch is the content of an upstream twin report.
type DeviceReportBatch struct {
	Devices []DeviceReport `json:"devices"`
}

// DeviceReport is the state of one device as its edge node sees it.
type DeviceReport struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Seq increases with every change the edge makes to this device's
	// reported state; the cloud keeps the highest.
	Seq int64 `json:"seq"`
	// State is the device state (online, offline, unknown, or what the mapper reports).
	State string `json:"state,omitempty"`
	// LastOnlineTime is RFC 3339, set when the device was last seen online.
	LastOnlineTime string       `json:"lastOnlineTime,omitempty"`
	Twins          []TwinReport `json:"twins,omitempty"`
}

// TwinReport is one property's reported and observed desired value.
type TwinReport struct {
	PropertyName    string     `json:"propertyName"`
	Reported        *TwinValue `json:"reported,omitempty"`
	ObservedDesired *TwinValue `json:"observedDesired,omitempty"`
}

// TwinValue is a value as Device.status holds it.
type TwinValue struct {
	Value    string            `json:"value"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// DeviceReportResult is the content of the cloud's answer when some devices
// of a batch were refused; they will never be accepted, so the edge must not
// retry them.
type DeviceReportResult struct {
	Refused []DeviceRefusal `json:"refused,omitempty"`
}

// DeviceRefusal names a refused device and why.
type DeviceRefusal struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Reason    string `json:"reason"`
}

// TwinReportResource is the resource of node's twin reports.
func TwinReportResource(node string) Resource { return Resource{Type: TypeTwin, Name: node} }

// DecodeDeviceReport parses and validates a batch; the error names the
// offending device and field.
func DecodeDeviceReport(content []byte) (DeviceReportBatch, error) {
	var b DeviceReportBatch
	dec := json.NewDecoder(bytes.NewReader(content))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return DeviceReportBatch{}, fmt.Errorf("%w: %v", ErrBadDeviceReport, err)
	}
	if dec.More() {
		return DeviceReportBatch{}, fmt.Errorf("%w: trailing data after the batch", ErrBadDeviceReport)
	}
	if len(b.Devices) == 0 {
		return DeviceReportBatch{}, fmt.Errorf("%w: no devices", ErrBadDeviceReport)
	}
	if len(b.Devices) > MaxDevicesPerReport {
		return DeviceReportBatch{}, fmt.Errorf("%w: %d devices, limit %d", ErrBadDeviceReport, len(b.Devices), MaxDevicesPerReport)
	}
	for i, d := range b.Devices {
		if err := d.Validate(); err != nil {
			return DeviceReportBatch{}, fmt.Errorf("%w: devices[%d]: %v", ErrBadDeviceReport, i, err)
		}
	}
	return b, nil
}

// Validate checks one report.
func (d DeviceReport) Validate() error {
	if err := validateLabel(d.Namespace); err != nil || d.Namespace == "" {
		return fmt.Errorf("namespace %q is not a namespace name", d.Namespace)
	}
	if err := validateSubdomain(d.Name); err != nil {
		return fmt.Errorf("name %q: %v", d.Name, err)
	}
	if d.Seq <= 0 {
		return fmt.Errorf("%s/%s: seq must be positive, got %d", d.Namespace, d.Name, d.Seq)
	}
	if err := checkString("state", d.State, 256); err != nil {
		return fmt.Errorf("%s/%s: %v", d.Namespace, d.Name, err)
	}
	if err := checkString("lastOnlineTime", d.LastOnlineTime, 64); err != nil {
		return fmt.Errorf("%s/%s: %v", d.Namespace, d.Name, err)
	}
	if len(d.Twins) > MaxTwinsPerDevice {
		return fmt.Errorf("%s/%s: %d twins, limit %d", d.Namespace, d.Name, len(d.Twins), MaxTwinsPerDevice)
	}
	seen := map[string]bool{}
	for j, tw := range d.Twins {
		if tw.PropertyName == "" {
			return fmt.Errorf("%s/%s: twins[%d]: empty propertyName", d.Namespace, d.Name, j)
		}
		if err := checkString("propertyName", tw.PropertyName, 253); err != nil {
			return fmt.Errorf("%s/%s: twins[%d]: %v", d.Namespace, d.Name, j, err)
		}
		if seen[tw.PropertyName] {
			return fmt.Errorf("%s/%s: twins[%d]: property %q listed twice", d.Namespace, d.Name, j, tw.PropertyName)
		}
		seen[tw.PropertyName] = true
		for field, v := range map[string]*TwinValue{"reported": tw.Reported, "observedDesired": tw.ObservedDesired} {
			if err := v.validate(); err != nil {
				return fmt.Errorf("%s/%s: twin %q: %s: %v", d.Namespace, d.Name, tw.PropertyName, field, err)
			}
		}
	}
	return nil
}

func (v *TwinValue) validate() error {
	if v == nil {
		return nil
	}
	if err := checkString("value", v.Value, MaxTwinValueBytes); err != nil {
		return err
	}
	if len(v.Metadata) > MaxTwinMetadataKeys {
		return fmt.Errorf("%d metadata keys, limit %d", len(v.Metadata), MaxTwinMetadataKeys)
	}
	for k, mv := range v.Metadata {
		if err := checkString("metadata key", k, 253); err != nil {
			return err
		}
		if err := checkString("metadata "+k, mv, 1024); err != nil {
			return err
		}
	}
	return nil
}

func checkString(field, s string, limit int) error {
	if len(s) > limit {
		return fmt.Errorf("%s is %d bytes, limit %d", field, len(s), limit)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8", field)
	}
	return nil
}
