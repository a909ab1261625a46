package ble

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1/convert"
)

// format is how a value is laid out in a characteristic.
type format struct {
	name   string
	size   int // bytes; 0 = the rest of the value
	signed bool
	float  bool
	big    bool
}

var formats = map[string]format{
	"raw":       {name: "raw"},
	"utf8":      {name: "utf8"},
	"uint8":     {name: "uint8", size: 1},
	"int8":      {name: "int8", size: 1, signed: true},
	"uint16le":  {name: "uint16le", size: 2},
	"uint16be":  {name: "uint16be", size: 2, big: true},
	"int16le":   {name: "int16le", size: 2, signed: true},
	"int16be":   {name: "int16be", size: 2, signed: true, big: true},
	"uint32le":  {name: "uint32le", size: 4},
	"uint32be":  {name: "uint32be", size: 4, big: true},
	"int32le":   {name: "int32le", size: 4, signed: true},
	"int32be":   {name: "int32be", size: 4, signed: true, big: true},
	"float32le": {name: "float32le", size: 4, float: true},
	"float32be": {name: "float32be", size: 4, float: true, big: true},
	"float64le": {name: "float64le", size: 8, float: true},
	"float64be": {name: "float64be", size: 8, float: true, big: true},
}

func defaultFormat(t convert.Type) string {
	switch t {
	case convert.TypeString:
		return "utf8"
	case convert.TypeInt, convert.TypeBoolean:
		return "uint8"
	case convert.TypeFloat, convert.TypeDouble:
		return "float32le"
	}
	return "raw"
}

// codec converts one property's bytes.
type codec struct {
	f      format
	offset int
	scale  float64
	typ    convert.Type
}

func (c codec) order() binary.ByteOrder {
	if c.f.big {
		return binary.BigEndian
	}
	return binary.LittleEndian
}

// decode reads the property's value from a characteristic value.
func (c codec) decode(b []byte) (any, error) {
	if c.offset > len(b) {
		return nil, fmt.Errorf("ble: value has %d bytes, the property starts at byte %d", len(b), c.offset)
	}
	b = b[c.offset:]
	switch c.f.name {
	case "raw":
		return append([]byte(nil), b...), nil
	case "utf8":
		if !utf8.Valid(b) {
			return nil, fmt.Errorf("ble: value is not UTF-8 text (%d bytes)", len(b))
		}
		return string(b), nil
	}
	if len(b) < c.f.size {
		return nil, fmt.Errorf("ble: %s needs %d bytes, the value has %d after offset %d", c.f.name, c.f.size, len(b), c.offset)
	}
	b = b[:c.f.size]
	var f float64
	var i int64
	isInt := false
	switch {
	case c.f.float && c.f.size == 4:
		f32 := math.Float32frombits(c.order().Uint32(b))
		f, _ = strconv.ParseFloat(strconv.FormatFloat(float64(f32), 'g', -1, 32), 64)
	case c.f.float:
		f = math.Float64frombits(c.order().Uint64(b))
	default:
		isInt = true
		var u uint64
		switch c.f.size {
		case 1:
			u = uint64(b[0])
		case 2:
			u = uint64(c.order().Uint16(b))
		case 4:
			u = uint64(c.order().Uint32(b))
		}
		i = int64(u)
		if c.f.signed {
			shift := 64 - 8*c.f.size
			i = int64(u<<shift) >> shift
		}
	}
	if c.typ == convert.TypeBoolean {
		if !isInt {
			return nil, fmt.Errorf("ble: a BOOLEAN needs an integer dataFormat, not %s", c.f.name)
		}
		return i != 0, nil
	}
	if isInt {
		if c.scale == 1 {
			return i, nil
		}
		f = float64(i)
	}
	f *= c.scale
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("ble: value %v is not a finite number", f)
	}
	return f, nil
}

// encode turns a desired value into the bytes to write.
func (c codec) encode(v any) ([]byte, error) {
	if c.offset != 0 {
		return nil, fmt.Errorf("ble: cannot write a property that starts at byte %d of its characteristic: %w", c.offset, convert.ErrOutOfRange)
	}
	switch c.f.name {
	case "raw", "utf8":
		switch x := v.(type) {
		case []byte:
			return x, nil
		case string:
			return []byte(x), nil
		}
		return nil, fmt.Errorf("ble: %s wants text or bytes, got %T: %w", c.f.name, v, convert.ErrWrongType)
	}
	var f float64
	switch x := v.(type) {
	case bool:
		if x {
			f = 1
		}
	case int64:
		if c.scale == 1 && !c.f.float {
			return c.putInt(x)
		}
		f = float64(x)
	case float64:
		f = x
	default:
		return nil, fmt.Errorf("ble: %s wants a number, got %T: %w", c.f.name, v, convert.ErrWrongType)
	}
	raw := f / c.scale
	b := make([]byte, c.f.size)
	if c.f.float {
		if c.f.size == 4 {
			if math.Abs(raw) > math.MaxFloat32 {
				return nil, fmt.Errorf("ble: %v does not fit a float32: %w", raw, convert.ErrOutOfRange)
			}
			c.order().PutUint32(b, math.Float32bits(float32(raw)))
		} else {
			c.order().PutUint64(b, math.Float64bits(raw))
		}
		return b, nil
	}
	r := math.Round(raw)
	if math.Abs(r-raw) > 1e-9*math.Max(1, math.Abs(raw)) {
		return nil, fmt.Errorf("ble: %v / scale %v is not a whole number for %s: %w", f, c.scale, c.f.name, convert.ErrOutOfRange)
	}
	if r < -(1<<62) || r > 1<<62 {
		return nil, fmt.Errorf("ble: %v does not fit %s: %w", r, c.f.name, convert.ErrOutOfRange)
	}
	return c.putInt(int64(r))
}

func (c codec) putInt(i int64) ([]byte, error) {
	bits := 8 * c.f.size
	lo, hi := int64(0), int64(1)<<bits-1
	if c.f.signed {
		lo, hi = -(int64(1) << (bits - 1)), int64(1)<<(bits-1)-1
	}
	if i < lo || i > hi {
		return nil, fmt.Errorf("ble: %d does not fit %s (%d..%d): %w", i, c.f.name, lo, hi, convert.ErrOutOfRange)
	}
	b := make([]byte, c.f.size)
	switch c.f.size {
	case 1:
		b[0] = byte(i)
	case 2:
		c.order().PutUint16(b, uint16(i))
	case 4:
		c.order().PutUint32(b, uint32(i))
	}
	return b, nil
}
