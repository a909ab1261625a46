package convert

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func mustAny(t *testing.T, v any) *anypb.Any {
	t.Helper()
	a, err := ToAny(v)
	if err != nil {
		t.Fatalf("ToAny(%v): %v", v, err)
	}
	return a
}

func TestToAnyWrapperChoice(t *testing.T) {
	cases := []struct {
		in   any
		url  string
		back any
	}{
		{"127.0.0.1", urlString, "127.0.0.1"},
		{true, urlBool, true},
		{502, urlInt32, int64(502)},
		{float64(502), urlInt32, int64(502)}, // a JSON number from a CRD
		{int64(1) << 40, urlInt64, int64(1) << 40},
		{uint64(math.MaxUint64), urlUInt64, uint64(math.MaxUint64)},
		{0.1, urlFloat, 0.1},
		{0.1234567891234, urlDouble, 0.1234567891234},
		{float32(2.5), urlFloat, 2.5},
		{[]byte{1, 2}, urlBytes, []byte{1, 2}},
	}
	for _, c := range cases {
		a := mustAny(t, c.in)
		if a.TypeUrl != c.url {
			t.Errorf("ToAny(%#v) type %s, want %s", c.in, a.TypeUrl, c.url)
		}
		got, err := FromAny(a)
		if err != nil {
			t.Fatalf("FromAny: %v", err)
		}
		if diff := cmp.Diff(c.back, got); diff != "" {
			t.Errorf("round trip of %#v (-want +got):\n%s", c.in, diff)
		}
	}
}

func TestFromAnyKubeEdgeFloat(t *testing.T) {
	// KubeEdge's edgecore sends every JSON number as a FloatValue.
	a, _ := anypb.New(wrapperspb.Float(0.1))
	v, err := FromAny(a)
	if err != nil || v != 0.1 {
		t.Fatalf("FloatValue(0.1) = %v, %v; want 0.1", v, err)
	}
}

func TestFromAnyRejects(t *testing.T) {
	a, _ := anypb.New(&emptypb.Empty{})
	if _, err := FromAny(a); !errors.Is(err, ErrWrongType) || !strings.Contains(err.Error(), "google.protobuf.Empty") {
		t.Errorf("Empty: %v", err)
	}
	bad := &anypb.Any{TypeUrl: urlInt32, Value: []byte{0xff}}
	if _, err := FromAny(bad); !errors.Is(err, ErrWrongType) {
		t.Errorf("corrupt Int32Value: %v", err)
	}
	if _, err := FromAny(nil); !errors.Is(err, ErrWrongType) {
		t.Errorf("nil: %v", err)
	}
	if _, err := ToAny(map[string]any{}); !errors.Is(err, ErrWrongType) {
		t.Errorf("ToAny(map): %v", err)
	}
	if _, err := ToAnyMap(map[string]any{"nested": []any{1}}); err == nil || !strings.Contains(err.Error(), `"nested"`) {
		t.Errorf("ToAnyMap nested: %v", err)
	}
}

func TestConfig(t *testing.T) {
	data := map[string]*anypb.Any{
		"ip":      mustAny(t, "127.0.0.1"),
		"port":    mustAny(t, float32(1502)), // as KubeEdge sends it
		"slaveID": mustAny(t, "3"),           // quoted in a manifest
		"isSwap":  mustAny(t, "true"),
		"scale":   mustAny(t, 0.5),
		"parity":  mustAny(t, "E"),
	}
	c := NewConfig("protocol configData", data)
	if got := c.String("ip", Required); got != "127.0.0.1" {
		t.Errorf("ip %q", got)
	}
	if got := c.Int("port", Required, 1, 65535); got != 1502 {
		t.Errorf("port %d", got)
	}
	if got := c.Int("slaveID", Required, 0, 247); got != 3 {
		t.Errorf("slaveID %d", got)
	}
	if !c.Bool("isSwap", Required) {
		t.Error("isSwap false")
	}
	if got := c.Float("scale", Required); got != 0.5 {
		t.Errorf("scale %v", got)
	}
	if got := c.OneOf("parity", Required, "N", "E", "O"); got != "E" {
		t.Errorf("parity %q", got)
	}
	if got := c.IntDefault("timeout", 7, 0, 10); got != 7 {
		t.Errorf("default %d", got)
	}
	if err := c.Err(); err != nil {
		t.Fatalf("Err: %v", err)
	}
}

func TestConfigErrorsNameEveryKey(t *testing.T) {
	data := map[string]*anypb.Any{
		"ip":     mustAny(t, 5),
		"port":   mustAny(t, 70000),
		"scale":  mustAny(t, "x"),
		"prot":   mustAny(t, 1),
		"parity": mustAny(t, "Q"),
		"limit":  mustAny(t, 1.5),
	}
	c := NewConfig("protocol configData", data)
	c.String("ip", Required)
	c.Int("port", Required, 1, 65535)
	c.Float("scale", Optional)
	c.Int("slaveID", Required, 0, 247)
	c.OneOf("parity", Required, "N", "E", "O")
	c.Int("limit", Required, 1, 125)
	err := c.Err()
	for _, want := range []struct {
		sentinel error
		text     string
	}{
		{ErrWrongType, `"ip"`}, {ErrOutOfRange, `"port"`}, {ErrWrongType, `"scale"`},
		{ErrMissingKey, `"slaveID"`}, {ErrUnknownKey, `"prot"`}, {ErrOutOfRange, `"parity"`}, {ErrWrongType, `"limit"`},
	} {
		if !errors.Is(err, want.sentinel) || !strings.Contains(err.Error(), want.text) {
			t.Errorf("error does not report %v for %s: %v", want.sentinel, want.text, err)
		}
	}
}

func TestParseFormat(t *testing.T) {
	cases := []struct {
		typ  Type
		in   string
		want any
		out  string
	}{
		{TypeInt, "42", int64(42), "42"},
		{TypeInt, " -7 ", int64(-7), "-7"},
		{TypeFloat, "21.5", 21.5, "21.5"},
		{TypeDouble, "0.1", 0.1, "0.1"},
		{TypeDouble, "1e30", 1e30, "1e+30"},
		{TypeBoolean, "TRUE", true, "true"},
		{TypeString, "pump-1", "pump-1", "pump-1"},
		{TypeBytes, "AQI=", []byte{1, 2}, "AQI="},
		{TypeStream, "rtsp://127.0.0.1/x", "rtsp://127.0.0.1/x", "rtsp://127.0.0.1/x"},
	}
	for _, c := range cases {
		v, err := Parse(c.typ, c.in)
		if err != nil {
			t.Fatalf("Parse(%s, %q): %v", c.typ, c.in, err)
		}
		if diff := cmp.Diff(c.want, v); diff != "" {
			t.Errorf("Parse(%s, %q) (-want +got):\n%s", c.typ, c.in, diff)
		}
		s, err := Format(c.typ, v)
		if err != nil || s != c.out {
			t.Errorf("Format(%s, %v) = %q, %v; want %q", c.typ, v, s, err, c.out)
		}
	}
}

func TestFormatDriverValues(t *testing.T) {
	cases := []struct {
		typ  Type
		in   any
		want string
	}{
		{TypeInt, uint16(1000), "1000"},
		{TypeInt, 100.0, "100"},
		{TypeFloat, float32(0.1), "0.1"},
		{TypeFloat, uint16(7), "7"},
		{TypeDouble, 21.500001, "21.500001"},
		{TypeBoolean, uint16(1), "true"},
		{TypeBoolean, false, "false"},
		{TypeString, []byte("abc"), "abc"},
		{TypeString, int32(5), "5"},
		{TypeBytes, []byte{0xff}, "/w=="},
	}
	for _, c := range cases {
		got, err := Format(c.typ, c.in)
		if err != nil || got != c.want {
			t.Errorf("Format(%s, %#v) = %q, %v; want %q", c.typ, c.in, got, err, c.want)
		}
	}
}

func TestParseFormatErrors(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"int syntax", second(Parse(TypeInt, "4.5")), ErrSyntax},
		{"int range", second(Parse(TypeInt, "99999999999999999999")), ErrOutOfRange},
		{"float range", second(Parse(TypeFloat, "1e39")), ErrOutOfRange},
		{"double inf", second(Parse(TypeDouble, "Inf")), ErrOutOfRange},
		{"bool", second(Parse(TypeBoolean, "yes")), ErrSyntax},
		{"bytes", second(Parse(TypeBytes, "!!")), ErrSyntax},
		{"type", second(Parse("NUMBER", "1")), ErrUnknownType},
		{"format int fraction", second(Format(TypeInt, 100.5)), ErrWrongType},
		{"format int from bool", second(Format(TypeInt, true)), ErrWrongType},
		{"format float32 range", second(Format(TypeFloat, 1e300)), ErrOutOfRange},
		{"format bool 2", second(Format(TypeBoolean, 2)), ErrWrongType},
		{"format string binary", second(Format(TypeString, []byte{0xff})), ErrWrongType},
		{"format nan", second(Format(TypeDouble, math.NaN())), ErrOutOfRange},
	}
	for _, c := range cases {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, c.err, c.want)
		}
	}
}

func second[T any](_ T, err error) error { return err }

func TestParseType(t *testing.T) {
	for in, want := range map[string]Type{"int": TypeInt, "Integer": TypeInt, "float": TypeFloat, "DOUBLE": TypeDouble, "boolean": TypeBoolean, "bytes": TypeBytes, "stream": TypeStream, "string": TypeString} {
		got, err := ParseType(in)
		if err != nil || got != want {
			t.Errorf("ParseType(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseType("bool"); !errors.Is(err, ErrUnknownType) {
		t.Errorf("bool: %v", err)
	}
}

func TestRange(t *testing.T) {
	r, err := ParseRange("0", "100")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Check(int64(50)); err != nil {
		t.Error(err)
	}
	if err := r.Check(101.0); !errors.Is(err, ErrOutOfRange) || !strings.Contains(err.Error(), "maximum 100") {
		t.Errorf("101: %v", err)
	}
	if err := r.Check(int64(-1)); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("-1: %v", err)
	}
	if err := r.Check("text"); err != nil {
		t.Errorf("string: %v", err)
	}
	if _, err := ParseRange("10", "1"); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("inverted: %v", err)
	}
	if _, err := ParseRange("x", ""); !errors.Is(err, ErrSyntax) {
		t.Errorf("syntax: %v", err)
	}
	open, _ := ParseRange("", "")
	if err := open.Check(1e300); err != nil {
		t.Error(err)
	}
}

func TestBytesRoundTrip(t *testing.T) {
	v, err := Parse(TypeBytes, "AAEC")
	if err != nil || !bytes.Equal(v.([]byte), []byte{0, 1, 2}) {
		t.Fatalf("%v %v", v, err)
	}
}

func TestConfigRequiredStringMustNotBeEmpty(t *testing.T) {
	data := map[string]*anypb.Any{"nodeID": mustAny(t, ""), "note": mustAny(t, "")}
	c := NewConfig("visitor configData", data)
	c.String("nodeID", Required)
	c.String("note", Optional)
	err := c.Err()
	if !errors.Is(err, ErrMissingKey) || !strings.Contains(err.Error(), `"nodeID"`) || !strings.Contains(err.Error(), "must not be empty") {
		t.Fatalf("error %v, want ErrMissingKey naming nodeID as empty", err)
	}
	if strings.Contains(err.Error(), `"note"`) {
		t.Errorf("an empty optional string was refused: %v", err)
	}
}
