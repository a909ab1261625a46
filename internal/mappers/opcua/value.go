package opcua

import (
	"fmt"
	"math"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1/convert"
)

// fromVariant turns a node's value into a Go value convert.Format handles.
func fromVariant(v *ua.Variant) (any, error) {
	if v == nil {
		return nil, fmt.Errorf("opcua: node has no value")
	}
	switch x := v.Value().(type) {
	case nil:
		return nil, fmt.Errorf("opcua: node value is null")
	case bool, int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, float64, string, []byte:
		return x, nil
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano), nil
	case *ua.LocalizedText:
		return x.Text, nil
	case *ua.NodeID:
		return x.String(), nil
	case ua.StatusCode:
		return uint32(x), nil
	default:
		return fmt.Sprint(x), nil
	}
}

// toVariant converts a desired value (parsed by the SDK: int64, float64,
// bool, string or []byte) into a variant of the node's data type, with range
// checks.
func toVariant(t ua.TypeID, value any) (*ua.Variant, error) {
	var out any
	switch t {
	case ua.TypeIDBoolean:
		switch x := value.(type) {
		case bool:
			out = x
		default:
			i, err := integer(value, 0, 1)
			if err != nil {
				return nil, err
			}
			out = i == 1
		}
	case ua.TypeIDSByte:
		i, err := integer(value, math.MinInt8, math.MaxInt8)
		out = int8(i)
		if err != nil {
			return nil, err
		}
	case ua.TypeIDByte:
		i, err := integer(value, 0, math.MaxUint8)
		out = uint8(i)
		if err != nil {
			return nil, err
		}
	case ua.TypeIDInt16:
		i, err := integer(value, math.MinInt16, math.MaxInt16)
		out = int16(i)
		if err != nil {
			return nil, err
		}
	case ua.TypeIDUint16:
		i, err := integer(value, 0, math.MaxUint16)
		out = uint16(i)
		if err != nil {
			return nil, err
		}
	case ua.TypeIDInt32:
		i, err := integer(value, math.MinInt32, math.MaxInt32)
		out = int32(i)
		if err != nil {
			return nil, err
		}
	case ua.TypeIDUint32:
		i, err := integer(value, 0, math.MaxUint32)
		out = uint32(i)
		if err != nil {
			return nil, err
		}
	case ua.TypeIDInt64:
		i, err := integer(value, math.MinInt64, math.MaxInt64)
		out = i
		if err != nil {
			return nil, err
		}
	case ua.TypeIDUint64:
		i, err := integer(value, 0, math.MaxInt64)
		out = uint64(i)
		if err != nil {
			return nil, err
		}
	case ua.TypeIDFloat:
		f, err := float(value)
		if err != nil {
			return nil, err
		}
		if math.Abs(f) > math.MaxFloat32 {
			return nil, fmt.Errorf("opcua: %v does not fit the node's Float: %w", f, convert.ErrOutOfRange)
		}
		out = float32(f)
	case ua.TypeIDDouble:
		f, err := float(value)
		if err != nil {
			return nil, err
		}
		out = f
	case ua.TypeIDString:
		s, ok := value.(string)
		if !ok {
			return nil, fmt.Errorf("opcua: the node holds a String, the value is a %T: %w", value, convert.ErrWrongType)
		}
		out = s
	case ua.TypeIDByteString:
		switch x := value.(type) {
		case []byte:
			out = x
		case string:
			out = []byte(x)
		default:
			return nil, fmt.Errorf("opcua: the node holds a ByteString, the value is a %T: %w", value, convert.ErrWrongType)
		}
	default:
		return nil, fmt.Errorf("opcua: writing nodes of data type %v is not supported: %w", t, convert.ErrWrongType)
	}
	v, err := ua.NewVariant(out)
	if err != nil {
		return nil, fmt.Errorf("opcua: variant of %T: %w", out, err)
	}
	return v, nil
}

func integer(value any, lo, hi int64) (int64, error) {
	var i int64
	switch x := value.(type) {
	case int64:
		i = x
	case float64:
		if x != math.Trunc(x) || math.IsInf(x, 0) || math.IsNaN(x) {
			return 0, fmt.Errorf("opcua: the node holds an integer, %v is not one: %w", x, convert.ErrWrongType)
		}
		if x < -(1<<63) || x >= 1<<63 {
			return 0, fmt.Errorf("opcua: %v is out of range: %w", x, convert.ErrOutOfRange)
		}
		i = int64(x)
	case bool:
		if x {
			i = 1
		}
	default:
		return 0, fmt.Errorf("opcua: the node holds a number, the value is a %T: %w", value, convert.ErrWrongType)
	}
	if i < lo || i > hi {
		return 0, fmt.Errorf("opcua: %d does not fit the node's data type (%d..%d): %w", i, lo, hi, convert.ErrOutOfRange)
	}
	return i, nil
}

func float(value any) (float64, error) {
	switch x := value.(type) {
	case float64:
		return x, nil
	case int64:
		return float64(x), nil
	}
	return 0, fmt.Errorf("opcua: the node holds a number, the value is a %T: %w", value, convert.ErrWrongType)
}
