package convert

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/anypb"
)

var allTypes = []Type{TypeInt, TypeFloat, TypeDouble, TypeString, TypeBoolean, TypeBytes, TypeStream}

// FuzzParseFormat: Parse never panics, and whatever it accepts formats to a
// string that parses back to the same value (the canonical form is stable).
func FuzzParseFormat(f *testing.F) {
	for i, s := range []string{"42", "-0", "21.5", "1e39", "0.1", "true", "FALSE", "AQI=", "", " 7 ", "NaN", "0x10", "1e-7", "99999999999999999999"} {
		f.Add(uint8(i), s)
	}
	f.Fuzz(func(t *testing.T, ti uint8, s string) {
		typ := allTypes[int(ti)%len(allTypes)]
		v, err := Parse(typ, s)
		if err != nil {
			if !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrOutOfRange) {
				t.Fatalf("Parse(%s, %q): error without a sentinel: %v", typ, s, err)
			}
			return
		}
		out, err := Format(typ, v)
		if err != nil {
			t.Fatalf("Format(%s, Parse(%q)=%#v): %v", typ, s, v, err)
		}
		v2, err := Parse(typ, out)
		if err != nil {
			t.Fatalf("Parse(%s, %q) of the formatted value: %v", typ, out, err)
		}
		if typ == TypeFloat {
			return // FLOAT formats at float32 precision by design
		}
		if diff := cmp.Diff(v, v2); diff != "" {
			t.Fatalf("%s %q -> %q changed the value:\n%s", typ, s, out, diff)
		}
	})
}

// FuzzFromAny: decoding arbitrary Any payloads under every wrapper type URL
// never panics, and accepted values re-wrap and decode to an equal value.
func FuzzFromAny(f *testing.F) {
	urls := []string{urlString, urlBool, urlInt32, urlInt64, urlUInt32, urlUInt64, urlFloat, urlDouble, urlBytes, "type.googleapis.com/google.protobuf.Empty", "bogus"}
	for i := range urls {
		f.Add(uint8(i), []byte{0x08, 0x01})
		f.Add(uint8(i), []byte{0x0a, 0x03, 'a', 'b', 'c'})
		f.Add(uint8(i), []byte{0x0d, 0xcd, 0xcc, 0xcc, 0x3d})
	}
	f.Fuzz(func(t *testing.T, ui uint8, payload []byte) {
		a := &anypb.Any{TypeUrl: urls[int(ui)%len(urls)], Value: payload}
		v, err := FromAny(a)
		if err != nil {
			if !errors.Is(err, ErrWrongType) {
				t.Fatalf("error without ErrWrongType: %v", err)
			}
			return
		}
		a2, err := ToAny(v)
		if err != nil {
			t.Fatalf("ToAny(%#v): %v", v, err)
		}
		v2, err := FromAny(a2)
		if err != nil {
			t.Fatalf("FromAny(ToAny(%#v)): %v", v, err)
		}
		if f, ok := v.(float64); ok && f != f {
			return // NaN never equals itself
		}
		if !equalNumbers(v, v2) {
			t.Fatalf("round trip %#v -> %#v", v, v2)
		}
	})
}

// equalNumbers compares values from FromAny, where an integral float may
// come back as an int64 (ToAny sends integral floats as integers).
func equalNumbers(a, b any) bool {
	if cmp.Equal(a, b) {
		return true
	}
	fa, errA := AsFloat(a)
	fb, errB := AsFloat(b)
	return errA == nil && errB == nil && fa == fb
}

// FuzzConfigInt: the config reader's integer path never panics and never
// returns a value outside the asked range.
func FuzzConfigInt(f *testing.F) {
	f.Add("502", 502.0, int64(1), int64(65535))
	f.Add("x", 1.5, int64(0), int64(10))
	f.Add("-1", -1e300, int64(-5), int64(5))
	f.Fuzz(func(t *testing.T, s string, fl float64, lo, hi int64) {
		for _, v := range []any{s, fl, float32(fl), int64(fl)} {
			a, err := ToAny(v)
			if err != nil {
				continue
			}
			c := NewConfig("fuzz", map[string]*anypb.Any{"k": a})
			got := c.Int("k", Required, lo, hi)
			if c.Err() == nil && (got < lo || got > hi) {
				t.Fatalf("Int returned %d outside [%d, %d] without an error", got, lo, hi)
			}
		}
	})
}
