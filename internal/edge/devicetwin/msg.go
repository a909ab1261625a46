package devicetwin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// These are KubeEdge's MQTT payloads (JSON names as KubeEdge spells them).

// MaxPayloadBytes bounds an MQTT payload DeviceTwin parses.
const MaxPayloadBytes = 256 << 10

// ErrBadPayload is wrapped by every payload parse error.
var ErrBadPayload = errors.New("devicetwin: bad payload")

// BaseMessage starts every payload.
type BaseMessage struct {
	EventID   string `json:"event_id"`
	Timestamp int64  `json:"timestamp"`
}

// TwinValue is an expected or actual value.
type TwinValue struct {
	Value    *string        `json:"value,omitempty"`
	Metadata *ValueMetadata `json:"metadata,omitempty"`
}

// ValueMetadata says when a value was set (ms since the epoch).
type ValueMetadata struct {
	Timestamp int64 `json:"timestamp,omitempty"`
}

// TypeMetadata is a twin's metadata: its value type (KubeEdge also uses
// "Updated" and "Deleted" here).
type TypeMetadata struct {
	Type string `json:"type,omitempty"`
}

// TwinVersion is a pair of counters: changes made by the cloud and by the edge.
type TwinVersion struct {
	CloudVersion int64 `json:"cloud"`
	EdgeVersion  int64 `json:"edge"`
}

// MsgTwin is one property in a twin payload.
type MsgTwin struct {
	Expected        *TwinValue    `json:"expected,omitempty"`
	Actual          *TwinValue    `json:"actual,omitempty"`
	Optional        *bool         `json:"optional,omitempty"`
	Metadata        *TypeMetadata `json:"metadata,omitempty"`
	ExpectedVersion *TwinVersion  `json:"expected_version,omitempty"`
	ActualVersion   *TwinVersion  `json:"actual_version,omitempty"`
}

// TwinUpdate is the payload of twin/update and of twin/update/result,
// twin/get/result and twin/update/delta (which adds Delta).
type TwinUpdate struct {
	BaseMessage
	Twin  map[string]*MsgTwin `json:"twin"`
	Delta map[string]string   `json:"delta,omitempty"`
}

// TwinDocument is the payload of twin/update/document: each changed
// property before and after.
type TwinDocument struct {
	BaseMessage
	Twin map[string]*DocPair `json:"twin"`
}

// DocPair is a property before (nil if new) and after a change.
type DocPair struct {
	Last    *MsgTwin `json:"last"`
	Current *MsgTwin `json:"current"`
}

// StateUpdate is the payload of state/update.
type StateUpdate struct {
	BaseMessage
	State string `json:"state"`
}

// DeviceInfo is a device in membership and state results.
type DeviceInfo struct {
	ID          string              `json:"id,omitempty"`
	Name        string              `json:"name"`
	Description string              `json:"description,omitempty"`
	State       string              `json:"state,omitempty"`
	LastOnline  string              `json:"last_online,omitempty"`
	Twin        map[string]*MsgTwin `json:"twin,omitempty"`
}

// StateResult is the payload of state/update/result and state/get/result.
type StateResult struct {
	BaseMessage
	Device DeviceInfo `json:"device"`
}

// MembershipResult is the payload of membership/get/result.
type MembershipResult struct {
	BaseMessage
	Devices []DeviceInfo `json:"devices"`
}

// MembershipUpdated is the payload of membership/updated.
type MembershipUpdated struct {
	BaseMessage
	AddedDevices   []DeviceInfo `json:"added_devices"`
	RemovedDevices []DeviceInfo `json:"removed_devices"`
}

// ErrorResult is what a result topic carries when a request failed.
type ErrorResult struct {
	BaseMessage
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}

// Result codes, HTTP-like as in KubeEdge.
const (
	CodeBadRequest = 400
	CodeNotFound   = 404
	CodeConflict   = 409
	CodeInternal   = 500
)

// decodeStrict decodes one JSON object from payload into v: unknown fields
// are tolerated (device apps add their own), trailing data is not.
func decodeStrict(payload []byte, v any) error {
	if len(payload) > MaxPayloadBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrBadPayload, len(payload), MaxPayloadBytes)
	}
	if !utf8.Valid(payload) {
		return fmt.Errorf("%w: not UTF-8", ErrBadPayload)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the JSON object", ErrBadPayload)
	}
	return nil
}

// ParseBase parses the payload of a query (twin/get, state/get,
// membership/get). An empty payload is allowed: the reply then has no event id.
func ParseBase(payload []byte) (BaseMessage, error) {
	var b BaseMessage
	if len(bytes.TrimSpace(payload)) == 0 {
		return b, nil
	}
	if err := decodeStrict(payload, &b); err != nil {
		return BaseMessage{}, err
	}
	return b, nil
}

// ParseTwinUpdate parses a twin/update payload; the error names the bad
// property or field.
func ParseTwinUpdate(payload []byte) (TwinUpdate, error) {
	var u TwinUpdate
	if err := decodeStrict(payload, &u); err != nil {
		return TwinUpdate{}, err
	}
	if len(u.Twin) == 0 {
		return TwinUpdate{}, fmt.Errorf("%w: \"twin\" is missing or empty", ErrBadPayload)
	}
	for name, t := range u.Twin {
		if name == "" {
			return TwinUpdate{}, fmt.Errorf("%w: a twin has an empty property name", ErrBadPayload)
		}
		if t == nil {
			return TwinUpdate{}, fmt.Errorf("%w: twin %q is null (deleting twins is not supported: properties come from the DeviceModel)", ErrBadPayload, name)
		}
		if t.Expected == nil && t.Actual == nil {
			return TwinUpdate{}, fmt.Errorf("%w: twin %q has neither \"expected\" nor \"actual\"", ErrBadPayload, name)
		}
		for field, v := range map[string]*TwinValue{"expected": t.Expected, "actual": t.Actual} {
			if v == nil {
				continue
			}
			if v.Value == nil {
				return TwinUpdate{}, fmt.Errorf("%w: twin %q: %s has no \"value\"", ErrBadPayload, name, field)
			}
			if len(*v.Value) > 64<<10 {
				return TwinUpdate{}, fmt.Errorf("%w: twin %q: %s value is %d bytes, limit 65536", ErrBadPayload, name, field, len(*v.Value))
			}
		}
		if t.Metadata != nil && (t.Metadata.Type == "deleted" || t.Metadata.Type == "Deleted") {
			return TwinUpdate{}, fmt.Errorf("%w: twin %q: deleting twins is not supported (properties come from the DeviceModel)", ErrBadPayload, name)
		}
	}
	return u, nil
}

// ParseStateUpdate parses a state/update payload.
func ParseStateUpdate(payload []byte) (StateUpdate, error) {
	var s StateUpdate
	if err := decodeStrict(payload, &s); err != nil {
		return StateUpdate{}, err
	}
	if s.State == "" {
		return StateUpdate{}, fmt.Errorf("%w: \"state\" is missing or empty", ErrBadPayload)
	}
	if len(s.State) > 256 {
		return StateUpdate{}, fmt.Errorf("%w: state is %d bytes, limit 256", ErrBadPayload, len(s.State))
	}
	return s, nil
}

// EventIDOf extracts event_id from a payload that failed to parse, so that
// an error result can still be matched by the device app; "" if unreadable.
func EventIDOf(payload []byte) string {
	var b struct {
		EventID string `json:"event_id"`
	}
	if len(payload) > MaxPayloadBytes || json.Unmarshal(payload, &b) != nil {
		return ""
	}
	return b.EventID
}

func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own payload types are marshalled; they always encode.
		return []byte(`{"code":500,"reason":"internal: cannot encode result"}`)
	}
	return b
}
