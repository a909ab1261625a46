package convert

import (
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Type is a DeviceModel property type.
type Type string

// The property types of the DeviceModel CRD.
const (
	TypeInt     Type = "INT"
	TypeFloat   Type = "FLOAT"
	TypeDouble  Type = "DOUBLE"
	TypeString  Type = "STRING"
	TypeBoolean Type = "BOOLEAN"
	TypeBytes   Type = "BYTES"
	TypeStream  Type = "STREAM"
)

// ParseType reads a model property type. Case is ignored (KubeEdge's own
// code lower-cases them) and "integer" is accepted for INT, as KubeEdge
// does.
func ParseType(s string) (Type, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "INT", "INTEGER":
		return TypeInt, nil
	case "FLOAT":
		return TypeFloat, nil
	case "DOUBLE":
		return TypeDouble, nil
	case "STRING":
		return TypeString, nil
	case "BOOLEAN":
		return TypeBoolean, nil
	case "BYTES":
		return TypeBytes, nil
	case "STREAM":
		return TypeStream, nil
	}
	return "", fmt.Errorf("%w: %q (want INT, FLOAT, DOUBLE, STRING, BOOLEAN, BYTES or STREAM)", ErrUnknownType, s)
}

// Parse reads a twin value string (a desired value from the Device CRD) as
// type t: INT gives int64, FLOAT and DOUBLE float64 (FLOAT must fit a
// float32), BOOLEAN bool, STRING and STREAM string, BYTES []byte from
// standard base64.
func Parse(t Type, s string) (any, error) {
	switch t {
	case TypeInt:
		i, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
				return nil, fmt.Errorf("%w: INT value %q does not fit an int64", ErrOutOfRange, s)
			}
			return nil, fmt.Errorf("%w: %q is not an INT", ErrSyntax, s)
		}
		return i, nil
	case TypeFloat, TypeDouble:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
				return nil, fmt.Errorf("%w: %s value %q is too large", ErrOutOfRange, t, s)
			}
			return nil, fmt.Errorf("%w: %q is not a %s", ErrSyntax, s, t)
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%w: %s value %q is not finite", ErrOutOfRange, t, s)
		}
		if t == TypeFloat && math.Abs(f) > math.MaxFloat32 {
			return nil, fmt.Errorf("%w: FLOAT value %q does not fit a float32", ErrOutOfRange, s)
		}
		return f, nil
	case TypeBoolean:
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		return nil, fmt.Errorf("%w: %q is not a BOOLEAN (want true or false)", ErrSyntax, s)
	case TypeString, TypeStream:
		return s, nil
	case TypeBytes:
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("%w: BYTES value is not standard base64: %v", ErrSyntax, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownType, string(t))
}

// Format renders a driver's value as the twin string of type t. Numbers of
// any Go numeric type are accepted for INT (when integral), FLOAT and
// DOUBLE; bools, and the integers 0 and 1, for BOOLEAN; strings, []byte
// (valid UTF-8) and scalars for STRING and STREAM; []byte and strings for
// BYTES (as standard base64).
func Format(t Type, v any) (string, error) {
	switch t {
	case TypeInt:
		i, err := goInt(v)
		if err != nil {
			return "", err
		}
		return strconv.FormatInt(i, 10), nil
	case TypeFloat, TypeDouble:
		f, err := goFloat(v)
		if err != nil {
			return "", err
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return "", fmt.Errorf("%w: %s value %v is not finite", ErrOutOfRange, t, f)
		}
		bits := 64
		if t == TypeFloat {
			if math.Abs(f) > math.MaxFloat32 {
				return "", fmt.Errorf("%w: FLOAT value %v does not fit a float32", ErrOutOfRange, f)
			}
			bits = 32
		}
		return formatFloat(f, bits), nil
	case TypeBoolean:
		switch x := v.(type) {
		case bool:
			return strconv.FormatBool(x), nil
		case string:
			b, err := Parse(TypeBoolean, x)
			if err != nil {
				return "", err
			}
			return strconv.FormatBool(b.(bool)), nil
		}
		i, err := goInt(v)
		if err != nil || (i != 0 && i != 1) {
			return "", fmt.Errorf("%w: want a BOOLEAN, got %s", ErrWrongType, describe(v))
		}
		return strconv.FormatBool(i == 1), nil
	case TypeString, TypeStream:
		switch x := v.(type) {
		case string:
			return x, nil
		case []byte:
			if !utf8.Valid(x) {
				return "", fmt.Errorf("%w: %d bytes are not UTF-8 text (use type BYTES)", ErrWrongType, len(x))
			}
			return string(x), nil
		case bool:
			return strconv.FormatBool(x), nil
		}
		if i, err := goInt(v); err == nil {
			return strconv.FormatInt(i, 10), nil
		}
		if f, err := goFloat(v); err == nil {
			return formatFloat(f, 64), nil
		}
		return "", fmt.Errorf("%w: want a STRING, got %s", ErrWrongType, describe(v))
	case TypeBytes:
		switch x := v.(type) {
		case []byte:
			return base64.StdEncoding.EncodeToString(x), nil
		case string:
			return base64.StdEncoding.EncodeToString([]byte(x)), nil
		}
		return "", fmt.Errorf("%w: want BYTES, got %s", ErrWrongType, describe(v))
	}
	return "", fmt.Errorf("%w: %q", ErrUnknownType, string(t))
}

// formatFloat writes plain decimals for everyday magnitudes and exponent
// form for very large or small ones; both parse back exactly.
func formatFloat(f float64, bits int) string {
	a := math.Abs(f)
	if a != 0 && (a >= 1e21 || a < 1e-6) {
		return strconv.FormatFloat(f, 'g', -1, bits)
	}
	return strconv.FormatFloat(f, 'f', -1, bits)
}

func goInt(v any) (int64, error) {
	switch x := v.(type) {
	case int:
		return int64(x), nil
	case int8:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case int64:
		return x, nil
	case uint:
		return goInt(uint64(x))
	case uint8:
		return int64(x), nil
	case uint16:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case uint64:
		if x > math.MaxInt64 {
			return 0, fmt.Errorf("%w: %d does not fit an INT", ErrOutOfRange, x)
		}
		return int64(x), nil
	case float32:
		return goInt(float64(x))
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) || x != math.Trunc(x) {
			return 0, fmt.Errorf("%w: %v is not an integer", ErrWrongType, x)
		}
		if x < -(1<<63) || x >= 1<<63 {
			return 0, fmt.Errorf("%w: %v does not fit an INT", ErrOutOfRange, x)
		}
		return int64(x), nil
	case string:
		i, err := Parse(TypeInt, x)
		if err != nil {
			return 0, err
		}
		return i.(int64), nil
	}
	return 0, fmt.Errorf("%w: want an integer, got %s", ErrWrongType, describe(v))
}

func goFloat(v any) (float64, error) {
	switch x := v.(type) {
	case float32:
		return widenFloat32(x), nil
	case float64:
		return x, nil
	case string:
		f, err := Parse(TypeDouble, x)
		if err != nil {
			return 0, err
		}
		return f.(float64), nil
	case bool, nil, []byte:
		return 0, fmt.Errorf("%w: want a number, got %s", ErrWrongType, describe(v))
	}
	i, err := goInt(v)
	if err != nil {
		if u, ok := v.(uint64); ok {
			return float64(u), nil
		}
		if u, ok := v.(uint); ok {
			return float64(u), nil
		}
		return 0, err
	}
	return float64(i), nil
}

// Range is a model property's [minimum, maximum]; a nil bound is open.
type Range struct {
	Min, Max *float64
}

// ParseRange reads a model's minimum and maximum strings (empty = open).
func ParseRange(minimum, maximum string) (Range, error) {
	var r Range
	for _, b := range []struct {
		s    string
		dst  **float64
		name string
	}{{minimum, &r.Min, "minimum"}, {maximum, &r.Max, "maximum"}} {
		if strings.TrimSpace(b.s) == "" {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(b.s), 64)
		if err != nil || math.IsNaN(f) {
			return Range{}, fmt.Errorf("%w: %s %q is not a number", ErrSyntax, b.name, b.s)
		}
		*b.dst = &f
	}
	if r.Min != nil && r.Max != nil && *r.Min > *r.Max {
		return Range{}, fmt.Errorf("%w: minimum %v is above maximum %v", ErrOutOfRange, *r.Min, *r.Max)
	}
	return r, nil
}

// Check reports ErrOutOfRange when a numeric value lies outside the range.
// Non-numeric values are always within range.
func (r Range) Check(v any) error {
	if r.Min == nil && r.Max == nil {
		return nil
	}
	var f float64
	switch v.(type) {
	case bool, string, []byte, nil:
		return nil
	}
	f, err := goFloat(v)
	if err != nil {
		return nil
	}
	if r.Min != nil && f < *r.Min {
		return fmt.Errorf("%w: %v is below the minimum %v", ErrOutOfRange, f, *r.Min)
	}
	if r.Max != nil && f > *r.Max {
		return fmt.Errorf("%w: %v is above the maximum %v", ErrOutOfRange, f, *r.Max)
	}
	return nil
}
