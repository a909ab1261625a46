package modbus

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"

	"github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1/convert"
)

// wireBytes turns registers (as read, big-endian words) into the byte order
// the value is laid out in, applying isRegisterSwap and isSwap. The same
// transform, applied again, undoes itself, so it serves writes too.
func (v visitor) wireBytes(regs []uint16) []byte {
	n := len(regs)
	b := make([]byte, 2*n)
	for i, r := range regs {
		j := i
		if v.swapRegister {
			j = n - 1 - i
		}
		hi, lo := byte(r>>8), byte(r)
		if v.swapBytes {
			hi, lo = lo, hi
		}
		b[2*j], b[2*j+1] = hi, lo
	}
	return b
}

// registersOf is the inverse of wireBytes.
func (v visitor) registersOf(b []byte) []uint16 {
	n := len(b) / 2
	regs := make([]uint16, n)
	for j := 0; j < n; j++ {
		i := j
		if v.swapRegister {
			i = n - 1 - j
		}
		hi, lo := b[2*j], b[2*j+1]
		if v.swapBytes {
			hi, lo = lo, hi
		}
		regs[i] = uint16(hi)<<8 | uint16(lo)
	}
	return regs
}

// decodeRegisters turns registers into the property's Go value.
func (v visitor) decodeRegisters(regs []uint16) (any, error) {
	if len(regs) != int(v.limit) {
		return nil, fmt.Errorf("modbus: %s: got %d registers, want %d", v, len(regs), v.limit)
	}
	b := v.wireBytes(regs)
	switch v.typ {
	case convert.TypeBoolean:
		return regs[0] != 0, nil
	case convert.TypeString:
		return string(bytes.TrimRight(b, "\x00")), nil
	case convert.TypeBytes:
		return b, nil
	case convert.TypeFloat, convert.TypeDouble:
		var f float64
		switch len(b) {
		case 2:
			f = float64(v.integer(b))
		case 4:
			f = widen(math.Float32frombits(binary.BigEndian.Uint32(b)))
		case 8:
			f = math.Float64frombits(binary.BigEndian.Uint64(b))
		}
		if f *= v.scale; math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("modbus: %s holds %v (scaled), not a finite number", v, f)
		}
		return f, nil
	case convert.TypeInt:
		i := v.integer(b)
		if v.scale == 1 {
			return i, nil
		}
		return float64(i) * v.scale, nil
	}
	return nil, fmt.Errorf("modbus: %s: cannot decode %s", v, v.typ)
}

// integer reads 2, 4 or 8 bytes as an unsigned or signed integer.
func (v visitor) integer(b []byte) int64 {
	switch len(b) {
	case 2:
		u := binary.BigEndian.Uint16(b)
		if v.signed {
			return int64(int16(u))
		}
		return int64(u)
	case 4:
		u := binary.BigEndian.Uint32(b)
		if v.signed {
			return int64(int32(u))
		}
		return int64(u)
	default:
		return int64(binary.BigEndian.Uint64(b)) // 64 bits are always two's complement here
	}
}

// widen converts through the shortest decimal, so 21.5f reports "21.5".
func widen(f float32) float64 {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return float64(f)
	}
	out, err := strconv.ParseFloat(strconv.FormatFloat(float64(f), 'g', -1, 32), 64)
	if err != nil {
		return float64(f)
	}
	return out
}

// decodeBits turns coils or discrete inputs into the property's value.
func (v visitor) decodeBits(bits []bool) (any, error) {
	if len(bits) != int(v.limit) {
		return nil, fmt.Errorf("modbus: %s: got %d bits, want %d", v, len(bits), v.limit)
	}
	if v.typ == convert.TypeBoolean {
		return bits[0], nil
	}
	var u uint64
	for i, on := range bits {
		if on {
			u |= 1 << i
		}
	}
	if v.scale == 1 {
		return int64(u), nil
	}
	return float64(u) * v.scale, nil
}

// encodeRegisters turns a value parsed for the property's type into the
// registers to write.
func (v visitor) encodeRegisters(value any) ([]uint16, error) {
	n := int(v.limit)
	b := make([]byte, 2*n)
	switch v.typ {
	case convert.TypeBoolean:
		on, ok := value.(bool)
		if !ok {
			return nil, fmt.Errorf("modbus: %s: want a bool, got %T", v, value)
		}
		if on {
			return []uint16{1}, nil
		}
		return []uint16{0}, nil
	case convert.TypeString, convert.TypeBytes:
		var src []byte
		switch x := value.(type) {
		case string:
			src = []byte(x)
		case []byte:
			src = x
		default:
			return nil, fmt.Errorf("modbus: %s: want text, got %T", v, value)
		}
		if len(src) > len(b) {
			return nil, fmt.Errorf("modbus: %s holds %d bytes, the value has %d: %w", v, len(b), len(src), convert.ErrOutOfRange)
		}
		copy(b, src)
		return v.registersOf(b), nil
	case convert.TypeInt, convert.TypeFloat, convert.TypeDouble:
		if i, ok := value.(int64); ok && v.typ == convert.TypeInt && v.scale == 1 {
			return v.encodeInt(i, b)
		}
		f, err := number(value)
		if err != nil {
			return nil, fmt.Errorf("modbus: %s: %w", v, err)
		}
		raw := f / v.scale
		if (v.typ == convert.TypeFloat || v.typ == convert.TypeDouble) && n >= 2 {
			if n == 2 {
				if math.Abs(raw) > math.MaxFloat32 {
					return nil, fmt.Errorf("modbus: %s: %v does not fit a float32: %w", v, raw, convert.ErrOutOfRange)
				}
				binary.BigEndian.PutUint32(b, math.Float32bits(float32(raw)))
			} else {
				binary.BigEndian.PutUint64(b, math.Float64bits(raw))
			}
			return v.registersOf(b), nil
		}
		r := math.Round(raw)
		if v.typ == convert.TypeInt && math.Abs(r-raw) > 1e-9*math.Max(1, math.Abs(raw)) {
			return nil, fmt.Errorf("modbus: %s: %v / scale %v = %v is not a whole register value: %w", v, f, v.scale, raw, convert.ErrOutOfRange)
		}
		lo, hi := v.intRange(n)
		if r < lo || r > hi {
			return nil, fmt.Errorf("modbus: %s: %v does not fit %d register(s) (range %v..%v): %w", v, r, n, lo, hi, convert.ErrOutOfRange)
		}
		switch n {
		case 1:
			binary.BigEndian.PutUint16(b, uint16(int64(r)))
		case 2:
			binary.BigEndian.PutUint32(b, uint32(int64(r)))
		default:
			binary.BigEndian.PutUint64(b, uint64(int64(r)))
		}
		return v.registersOf(b), nil
	}
	return nil, fmt.Errorf("modbus: %s: cannot encode %s", v, v.typ)
}

// encodeInt writes an exact integer (no float rounding: 64-bit values
// exceed float64's 53-bit mantissa).
func (v visitor) encodeInt(i int64, b []byte) ([]uint16, error) {
	n := len(b) / 2
	if n < 4 {
		lo, hi := v.intRange(n)
		if float64(i) < lo || float64(i) > hi {
			return nil, fmt.Errorf("modbus: %s: %d does not fit %d register(s) (range %v..%v): %w", v, i, n, lo, hi, convert.ErrOutOfRange)
		}
	}
	switch n {
	case 1:
		binary.BigEndian.PutUint16(b, uint16(i))
	case 2:
		binary.BigEndian.PutUint32(b, uint32(i))
	default:
		binary.BigEndian.PutUint64(b, uint64(i))
	}
	return v.registersOf(b), nil
}

func (v visitor) intRange(n int) (float64, float64) {
	bits := 16 * n
	if bits >= 64 {
		return math.MinInt64, math.MaxInt64
	}
	if v.signed {
		return -math.Ldexp(1, bits-1), math.Ldexp(1, bits-1) - 1
	}
	return 0, math.Ldexp(1, bits) - 1
}

// encodeBits turns a value into coils to write.
func (v visitor) encodeBits(value any) ([]bool, error) {
	if on, ok := value.(bool); ok {
		if v.limit != 1 {
			return nil, fmt.Errorf("modbus: %s: a bool sets 1 coil, limit is %d", v, v.limit)
		}
		return []bool{on}, nil
	}
	f, err := number(value)
	if err != nil {
		return nil, fmt.Errorf("modbus: %s: %w", v, err)
	}
	raw := math.Round(f / v.scale)
	if raw < 0 || raw >= math.Ldexp(1, int(v.limit)) || raw != f/v.scale {
		return nil, fmt.Errorf("modbus: %s: %v does not fit %d coil(s): %w", v, f, v.limit, convert.ErrOutOfRange)
	}
	u := uint64(raw)
	bits := make([]bool, v.limit)
	for i := range bits {
		bits[i] = u&(1<<i) != 0
	}
	return bits, nil
}

func number(value any) (float64, error) {
	switch x := value.(type) {
	case int64:
		return float64(x), nil
	case float64:
		return x, nil
	case bool:
		if x {
			return 1, nil
		}
		return 0, nil
	}
	return 0, fmt.Errorf("want a number, got %T", value)
}
