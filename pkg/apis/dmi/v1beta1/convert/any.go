package convert

import (
	"fmt"
	"math"
	"strconv"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Wrapper type URLs as anypb.New writes them.
const (
	typeURLPrefix = "type.googleapis.com/"
	urlString     = typeURLPrefix + "google.protobuf.StringValue"
	urlBool       = typeURLPrefix + "google.protobuf.BoolValue"
	urlInt32      = typeURLPrefix + "google.protobuf.Int32Value"
	urlInt64      = typeURLPrefix + "google.protobuf.Int64Value"
	urlUInt32     = typeURLPrefix + "google.protobuf.UInt32Value"
	urlUInt64     = typeURLPrefix + "google.protobuf.UInt64Value"
	urlFloat      = typeURLPrefix + "google.protobuf.FloatValue"
	urlDouble     = typeURLPrefix + "google.protobuf.DoubleValue"
	urlBytes      = typeURLPrefix + "google.protobuf.BytesValue"
)

// FromAny decodes a wrapper-typed Any into a Go value: string, bool, int64
// (Int32Value, Int64Value), uint64 (UInt32Value, UInt64Value), float64
// (FloatValue, DoubleValue) or []byte. Any other message type is
// ErrWrongType. The type URL's host part is ignored, as protobuf does.
func FromAny(a *anypb.Any) (any, error) {
	if a == nil {
		return nil, fmt.Errorf("%w: nil value", ErrWrongType)
	}
	name := string(a.MessageName())
	var (
		m   proto.Message
		get func() any
	)
	switch name {
	case "google.protobuf.StringValue":
		w := &wrapperspb.StringValue{}
		m, get = w, func() any { return w.Value }
	case "google.protobuf.BoolValue":
		w := &wrapperspb.BoolValue{}
		m, get = w, func() any { return w.Value }
	case "google.protobuf.Int32Value":
		w := &wrapperspb.Int32Value{}
		m, get = w, func() any { return int64(w.Value) }
	case "google.protobuf.Int64Value":
		w := &wrapperspb.Int64Value{}
		m, get = w, func() any { return w.Value }
	case "google.protobuf.UInt32Value":
		w := &wrapperspb.UInt32Value{}
		m, get = w, func() any { return uint64(w.Value) }
	case "google.protobuf.UInt64Value":
		w := &wrapperspb.UInt64Value{}
		m, get = w, func() any { return w.Value }
	case "google.protobuf.FloatValue":
		w := &wrapperspb.FloatValue{}
		m, get = w, func() any { return widenFloat32(w.Value) }
	case "google.protobuf.DoubleValue":
		w := &wrapperspb.DoubleValue{}
		m, get = w, func() any { return w.Value }
	case "google.protobuf.BytesValue":
		w := &wrapperspb.BytesValue{}
		m, get = w, func() any { return w.Value }
	default:
		return nil, fmt.Errorf("%w: unsupported Any type %q (want a google.protobuf wrapper)", ErrWrongType, a.GetTypeUrl())
	}
	if err := proto.Unmarshal(a.GetValue(), m); err != nil {
		return nil, fmt.Errorf("%w: decode %s: %v", ErrWrongType, name, err)
	}
	return get(), nil
}

// widenFloat32 converts through the shortest decimal that reads back as f,
// so that a FloatValue of 0.1 becomes 0.1 and not 0.10000000149011612.
func widenFloat32(f float32) float64 {
	if math.IsInf(float64(f), 0) || math.IsNaN(float64(f)) {
		return float64(f)
	}
	v, err := strconv.ParseFloat(strconv.FormatFloat(float64(f), 'g', -1, 32), 64)
	if err != nil { // cannot happen for a finite float32
		return float64(f)
	}
	return v
}

// ToAny wraps a Go value into an Any the way configData travels on the DMI
// wire: strings as StringValue, bools as BoolValue, integers as Int32Value
// when they fit and Int64Value otherwise (unsigned ones above MaxInt64 as
// UInt64Value), floats that are integral like integers, other floats as
// FloatValue when float32 holds them exactly in shortest-decimal form and
// DoubleValue otherwise, []byte as BytesValue.
//
// The integral-float rule is what lets a CRD's JSON number (always float64
// after decoding) reach a KubeEdge mapper as the integer its config struct
// expects. KubeEdge mappers decode only String, Int32, Int64, Float and
// Bool wrappers; ToAny uses no other type for values those cover.
func ToAny(v any) (*anypb.Any, error) {
	var m proto.Message
	switch x := v.(type) {
	case string:
		m = wrapperspb.String(x)
	case bool:
		m = wrapperspb.Bool(x)
	case int:
		m = intWrapper(int64(x))
	case int8:
		m = intWrapper(int64(x))
	case int16:
		m = intWrapper(int64(x))
	case int32:
		m = intWrapper(int64(x))
	case int64:
		m = intWrapper(x)
	case uint:
		m = uintWrapper(uint64(x))
	case uint8:
		m = uintWrapper(uint64(x))
	case uint16:
		m = uintWrapper(uint64(x))
	case uint32:
		m = uintWrapper(uint64(x))
	case uint64:
		m = uintWrapper(x)
	case float32:
		m = floatWrapper(widenFloat32(x))
	case float64:
		m = floatWrapper(x)
	case []byte:
		m = wrapperspb.Bytes(x)
	case nil:
		return nil, fmt.Errorf("%w: nil value", ErrWrongType)
	default:
		return nil, fmt.Errorf("%w: cannot wrap a %T in an Any", ErrWrongType, v)
	}
	a, err := anypb.New(m)
	if err != nil {
		return nil, fmt.Errorf("convert: wrap %T: %w", v, err)
	}
	return a, nil
}

func intWrapper(i int64) proto.Message {
	if i >= math.MinInt32 && i <= math.MaxInt32 {
		return wrapperspb.Int32(int32(i))
	}
	return wrapperspb.Int64(i)
}

func uintWrapper(u uint64) proto.Message {
	if u <= math.MaxInt64 {
		return intWrapper(int64(u))
	}
	return wrapperspb.UInt64(u)
}

func floatWrapper(f float64) proto.Message {
	// Integral floats inside the exactly representable range become ints.
	if f == math.Trunc(f) && math.Abs(f) <= 1<<53 {
		return intWrapper(int64(f))
	}
	if !math.IsInf(f, 0) && !math.IsNaN(f) && math.Abs(f) <= math.MaxFloat32 {
		f32 := float32(f)
		if widenFloat32(f32) == f {
			return wrapperspb.Float(f32)
		}
	}
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return wrapperspb.Float(float32(f))
	}
	return wrapperspb.Double(f)
}

// ToAnyMap wraps every value of a JSON-decoded configData map (as found in a
// Device CRD) with ToAny. Nested objects and arrays are rejected with
// ErrWrongType naming the key, since no wrapper type carries them.
func ToAnyMap(data map[string]any) (map[string]*anypb.Any, error) {
	out := make(map[string]*anypb.Any, len(data))
	for k, v := range data {
		a, err := ToAny(v)
		if err != nil {
			return nil, fmt.Errorf("configData key %q: %w", k, err)
		}
		out[k] = a
	}
	return out, nil
}

// FromAnyMap decodes every value of a configData map with FromAny.
func FromAnyMap(data map[string]*anypb.Any) (map[string]any, error) {
	out := make(map[string]any, len(data))
	for k, a := range data {
		v, err := FromAny(a)
		if err != nil {
			return nil, fmt.Errorf("configData key %q: %w", k, err)
		}
		out[k] = v
	}
	return out, nil
}
