package convert

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/anypb"
)

// Config reads a protocol or visitor configData map key by key, checking
// types and ranges, and collects every problem so that one error names them
// all. Typical use in a driver:
//
//	c := convert.NewConfig("protocol", data)
//	ip := c.String("ip", convert.Required)
//	port := c.Int("port", convert.Required, 1, 65535)
//	if err := c.Err(); err != nil { ... }
//
// Err also reports every key that no getter asked for (ErrUnknownKey), so a
// misspelt key is an error rather than silently ignored. Config is not safe
// for concurrent use.
type Config struct {
	what   string
	values map[string]*anypb.Any
	seen   map[string]bool
	errs   []error
}

// Presence says whether a key must be present.
type Presence bool

const (
	// Required keys must be present.
	Required Presence = true
	// Optional keys may be absent; the getter then returns the default.
	Optional Presence = false
)

// NewConfig starts reading data; what names the map in errors ("protocol
// configData", "visitor configData of property temperature").
func NewConfig(what string, data map[string]*anypb.Any) *Config {
	return &Config{what: what, values: data, seen: map[string]bool{}}
}

// Has reports whether key is present (and marks it as known).
func (c *Config) Has(key string) bool {
	c.seen[key] = true
	_, ok := c.values[key]
	return ok
}

// Known marks keys as allowed without reading them, for keys a driver
// accepts for compatibility but ignores.
func (c *Config) Known(keys ...string) {
	for _, k := range keys {
		c.seen[k] = true
	}
}

func (c *Config) fail(key string, err error) {
	c.errs = append(c.errs, fmt.Errorf("%s key %q: %w", c.what, key, err))
}

// get returns the decoded value of key, or ok=false when it is absent (after
// recording ErrMissingKey if it is required) or undecodable.
func (c *Config) get(key string, p Presence) (any, bool) {
	c.seen[key] = true
	a, ok := c.values[key]
	if !ok {
		if p == Required {
			c.fail(key, ErrMissingKey)
		}
		return nil, false
	}
	v, err := FromAny(a)
	if err != nil {
		c.fail(key, err)
		return nil, false
	}
	return v, true
}

// String returns a string key. Numbers and bools are not accepted: a
// string key holding 5 is more likely a mistake than intent.
func (c *Config) String(key string, p Presence) string {
	v, ok := c.get(key, p)
	if !ok {
		return ""
	}
	s, isStr := v.(string)
	if !isStr {
		c.fail(key, fmt.Errorf("%w: want a string, got %s", ErrWrongType, describe(v)))
		return ""
	}
	if s == "" && p == Required {
		// An empty required string is as good as a missing one: an OPC-UA
		// node id or a Modbus address of "" names nothing.
		c.fail(key, fmt.Errorf("%w: must not be empty", ErrMissingKey))
	}
	return s
}

// StringDefault is String with a default for an absent key.
func (c *Config) StringDefault(key, def string) string {
	if !c.Has(key) {
		return def
	}
	return c.String(key, Optional)
}

// Int returns an integer key within [lo, hi]. Any numeric wrapper holding an
// integral value is accepted (KubeEdge sends JSON numbers as FloatValue), and
// so is a string holding a decimal integer.
func (c *Config) Int(key string, p Presence, lo, hi int64) int64 {
	v, ok := c.get(key, p)
	if !ok {
		return 0
	}
	i, err := AsInt(v)
	if err != nil {
		c.fail(key, err)
		return 0
	}
	if i < lo || i > hi {
		c.fail(key, fmt.Errorf("%w: %d is not within [%d, %d]", ErrOutOfRange, i, lo, hi))
		return 0
	}
	return i
}

// IntDefault is Int with a default for an absent key.
func (c *Config) IntDefault(key string, def, lo, hi int64) int64 {
	if !c.Has(key) {
		return def
	}
	return c.Int(key, Optional, lo, hi)
}

// Float returns a numeric key (any numeric wrapper, or a decimal string),
// which must be finite.
func (c *Config) Float(key string, p Presence) float64 {
	v, ok := c.get(key, p)
	if !ok {
		return 0
	}
	f, err := AsFloat(v)
	if err != nil {
		c.fail(key, err)
		return 0
	}
	return f
}

// FloatDefault is Float with a default for an absent key.
func (c *Config) FloatDefault(key string, def float64) float64 {
	if !c.Has(key) {
		return def
	}
	return c.Float(key, Optional)
}

// Bool returns a boolean key: a BoolValue, or a string "true"/"false" (as
// some manifests quote them).
func (c *Config) Bool(key string, p Presence) bool {
	v, ok := c.get(key, p)
	if !ok {
		return false
	}
	b, err := AsBool(v)
	if err != nil {
		c.fail(key, err)
		return false
	}
	return b
}

// BoolDefault is Bool with a default for an absent key.
func (c *Config) BoolDefault(key string, def bool) bool {
	if !c.Has(key) {
		return def
	}
	return c.Bool(key, Optional)
}

// OneOf returns a string key that must be one of choices (compared exactly).
func (c *Config) OneOf(key string, p Presence, choices ...string) string {
	s := c.String(key, p)
	if s == "" {
		return ""
	}
	for _, ch := range choices {
		if s == ch {
			return s
		}
	}
	c.fail(key, fmt.Errorf("%w: %q is not one of %s", ErrOutOfRange, s, strings.Join(choices, ", ")))
	return ""
}

// Errorf records a driver's own check on key (e.g. two keys that conflict).
func (c *Config) Errorf(key string, err error) { c.fail(key, err) }

// Err returns every problem seen so far plus one ErrUnknownKey per key no
// getter read, joined into one error (nil if there are none). Unknown keys
// are listed in sorted order so the message is stable.
func (c *Config) Err() error {
	var unknown []string
	for k := range c.values {
		if !c.seen[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	errs := append([]error(nil), c.errs...)
	for _, k := range unknown {
		errs = append(errs, fmt.Errorf("%s key %q: %w", c.what, k, ErrUnknownKey))
	}
	return errors.Join(errs...)
}

// AsInt converts a FromAny value to an int64: integers as they are, floats
// when integral and in range, decimal strings when they parse.
func AsInt(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case uint64:
		if x > math.MaxInt64 {
			return 0, fmt.Errorf("%w: %d does not fit an int64", ErrOutOfRange, x)
		}
		return int64(x), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) || x != math.Trunc(x) {
			return 0, fmt.Errorf("%w: want an integer, got %v", ErrWrongType, x)
		}
		if x < -(1<<63) || x >= 1<<63 {
			return 0, fmt.Errorf("%w: %v does not fit an int64", ErrOutOfRange, x)
		}
		return int64(x), nil
	case string:
		i, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: want an integer, got string %q", ErrWrongType, x)
		}
		return i, nil
	default:
		return 0, fmt.Errorf("%w: want an integer, got %s", ErrWrongType, describe(v))
	}
}

// AsFloat converts a FromAny value to a finite float64.
func AsFloat(v any) (float64, error) {
	var f float64
	switch x := v.(type) {
	case int64:
		f = float64(x)
	case uint64:
		f = float64(x)
	case float64:
		f = x
	case string:
		p, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		if err != nil {
			return 0, fmt.Errorf("%w: want a number, got string %q", ErrWrongType, x)
		}
		f = p
	default:
		return 0, fmt.Errorf("%w: want a number, got %s", ErrWrongType, describe(v))
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%w: %v is not a finite number", ErrOutOfRange, f)
	}
	return f, nil
}

// AsBool converts a FromAny value to a bool.
func AsBool(v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		return false, fmt.Errorf("%w: want true or false, got string %q", ErrWrongType, x)
	default:
		return false, fmt.Errorf("%w: want a boolean, got %s", ErrWrongType, describe(v))
	}
}

func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("string %q", x)
	case []byte:
		return fmt.Sprintf("%d bytes", len(x))
	case nil:
		return "nothing"
	default:
		return fmt.Sprintf("%T %v", v, v)
	}
}
