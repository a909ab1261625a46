package devicetwin

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/kubeedge-go/kubeedge/pkg/apis/devices/v1beta1"
)

// checkValue reports why v is not a valid value of property p, or nil.
// Numbers are checked against the model's minimum and maximum when set;
// BOOLEAN accepts what strconv.ParseBool accepts; STRING, BYTES and STREAM
// accept any text.
func checkValue(p v1beta1.ModelProperty, v string) error {
	switch p.Type {
	case v1beta1.PropertyTypeInt:
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return fmt.Errorf("property %q is INT: %q is not an integer", p.Name, v)
		}
		return checkRange(p, float64(n), v)
	case v1beta1.PropertyTypeFloat, v1beta1.PropertyTypeDouble:
		bits := 64
		if p.Type == v1beta1.PropertyTypeFloat {
			bits = 32
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), bits)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("property %q is %s: %q is not a finite number", p.Name, p.Type, v)
		}
		return checkRange(p, f, v)
	case v1beta1.PropertyTypeBoolean:
		if _, err := strconv.ParseBool(strings.TrimSpace(v)); err != nil {
			return fmt.Errorf("property %q is BOOLEAN: %q is not true or false", p.Name, v)
		}
	case v1beta1.PropertyTypeString, v1beta1.PropertyTypeBytes, v1beta1.PropertyTypeStream, "":
	default:
		return fmt.Errorf("property %q has unknown type %q in its model", p.Name, p.Type)
	}
	return nil
}

func checkRange(p v1beta1.ModelProperty, f float64, raw string) error {
	if p.Minimum != "" {
		lo, err := strconv.ParseFloat(strings.TrimSpace(p.Minimum), 64)
		if err != nil {
			return fmt.Errorf("property %q: the model's minimum %q is not a number", p.Name, p.Minimum)
		}
		if f < lo {
			return fmt.Errorf("property %q: %s is below the minimum %s", p.Name, raw, p.Minimum)
		}
	}
	if p.Maximum != "" {
		hi, err := strconv.ParseFloat(strings.TrimSpace(p.Maximum), 64)
		if err != nil {
			return fmt.Errorf("property %q: the model's maximum %q is not a number", p.Name, p.Maximum)
		}
		if f > hi {
			return fmt.Errorf("property %q: %s is above the maximum %s", p.Name, raw, p.Maximum)
		}
	}
	return nil
}
