package mapper

import (
	"context"
	"errors"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1/convert"
)

// Driver is one protocol. The SDK calls it to validate configuration; the
// I/O happens on the Device values it returns. A Driver must be safe for
// concurrent use (devices are parsed from several goroutines) and must not
// do I/O in its methods: they run on the DMI request path.
type Driver interface {
	// NewDevice validates a device's protocol configData and returns a
	// Device that is not yet connected. An error (wrapping a convert
	// sentinel such as convert.ErrMissingKey or convert.ErrUnknownKey, so it
	// names the key) keeps the device from starting; the SDK reports it as
	// the device's state and in every twin's "error" metadata, and other
	// devices are unaffected.
	NewDevice(d DeviceSpec) (Device, error)
	// ParseVisitor validates one property's visitor configData and returns
	// the driver's parsed form, which the SDK hands back to Read, Write and
	// Subscribe. An error marks only that property as failed.
	ParseVisitor(p PropertySpec) (Visitor, error)
}

// Visitor is a driver's parsed visitor configuration of one property (a
// register address, an OPC-UA node id...). The SDK treats it as opaque.
type Visitor any

// Device is one connection to one physical device.
//
// Threading: the SDK calls Connect, Read, Write, State and Close from a
// single goroutine per device, never concurrently, so a Device needs no
// locking of its own for them. Subscribe's callback may be called from any
// goroutine.
//
// Errors: wrap ErrDisconnected when the connection is unusable (socket
// closed, session lost, link timeout): the SDK then reports the device as
// disconnected, calls Close, and Connect again with back-off. Any other
// error is about one property (a Modbus exception, BadNotWritable...): the
// SDK records it on that twin, marks the device unhealthy and keeps going.
type Device interface {
	// Connect opens the connection. It is called before first use and after
	// each ErrDisconnected; ctx bounds the attempt.
	Connect(ctx context.Context) error
	// Read returns the current value of a property as a Go value (integer,
	// float, bool, string or []byte types; convert.Format turns it into the
	// twin string for the model's property type).
	Read(ctx context.Context, v Visitor) (any, error)
	// Write sets a property. value has been parsed from the desired string
	// for the model's property type (int64, float64, bool, string or
	// []byte) and checked against the model's minimum/maximum.
	Write(ctx context.Context, v Visitor, value any) error
	// Close releases the connection. It may be called when Connect failed.
	Close() error
}

// Subscriber is implemented by devices that can push values (OPC-UA
// monitored items, BLE notifications) instead of being polled.
type Subscriber interface {
	// Subscribe starts delivering values of the visitor's property to fn
	// until ctx is done. It returns ok=false, nil when this property is to
	// be polled instead (its visitor did not ask for a subscription). fn may
	// be called from any goroutine, but not after ctx is done and Subscribe's
	// own goroutines have stopped; an error passed to fn that wraps
	// ErrDisconnected makes the SDK reconnect the device.
	Subscribe(ctx context.Context, v Visitor, fn func(value any, err error)) (ok bool, err error)
}

// Stater is implemented by devices that know their own health beyond "the
// last reads worked" (a BLE link state, a server status node). The SDK
// calls it once per state report; a State other than StateOK overrides the
// state it inferred.
type Stater interface {
	State(ctx context.Context) (State, error)
}

// ErrDisconnected marks a driver error as a connection loss.
var ErrDisconnected = errors.New("mapper: device disconnected")

// State is a device's state as reported by ReportDeviceStates, with
// KubeEdge's values.
type State string

// KubeEdge's device states.
const (
	StateOK           State = "ok"
	StateOnline       State = "online"
	StateOffline      State = "offline"
	StateDisconnected State = "disconnected"
	StateUnhealthy    State = "unhealthy"
	StateUnknown      State = "unknown"
)

// DeviceSpec is what a driver sees of a device.
type DeviceSpec struct {
	Namespace, Name string
	// ProtocolName is spec.protocol.protocolName.
	ProtocolName string
	// ConfigData is spec.protocol.configData; read it with
	// convert.NewConfig.
	ConfigData map[string]*anypb.Any
}

// PropertySpec is what a driver sees of one property: the device's entry
// joined with the model's.
type PropertySpec struct {
	Device DeviceSpec
	Name   string
	// Type and ReadOnly come from the DeviceModel.
	Type     convert.Type
	ReadOnly bool
	// VisitorProtocol and VisitorConfig are the device property's
	// visitors.protocolName and visitors.configData.
	VisitorProtocol string
	VisitorConfig   map[string]*anypb.Any
}
