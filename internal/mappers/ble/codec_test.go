package ble

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1/convert"
	"github.com/kubeedge-go/kubeedge/pkg/mapper"
)

func TestCodec(t *testing.T) {
	cases := []struct {
		name   string
		c      codec
		in     []byte
		want   any
		encode []byte // nil: same as in
	}{
		{"int16le scaled", codec{f: formats["int16le"], scale: 0.01, typ: convert.TypeDouble}, []byte{0x66, 0x08}, 21.5, nil},
		{"int16le negative", codec{f: formats["int16le"], scale: 1, typ: convert.TypeInt}, []byte{0xfb, 0xff}, int64(-5), nil},
		{"uint16be", codec{f: formats["uint16be"], scale: 1, typ: convert.TypeInt}, []byte{0x01, 0x02}, int64(258), nil},
		{"uint8 at offset", codec{f: formats["uint8"], scale: 1, offset: 1, typ: convert.TypeInt}, []byte{9, 77}, int64(77), []byte{}},
		{"float32le", codec{f: formats["float32le"], scale: 1, typ: convert.TypeFloat}, le32(math.Float32bits(21.5)), 21.5, nil},
		{"bool", codec{f: formats["uint8"], scale: 1, typ: convert.TypeBoolean}, []byte{1}, true, nil},
		{"utf8", codec{f: formats["utf8"], scale: 1, typ: convert.TypeString}, []byte("hello"), "hello", nil},
		{"raw", codec{f: formats["raw"], scale: 1, typ: convert.TypeBytes}, []byte{0, 1}, []byte{0, 1}, nil},
	}
	for _, c := range cases {
		got, err := c.c.decode(c.in)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, diff)
		}
		if c.encode != nil {
			continue // offset properties are read-only
		}
		b, err := c.c.encode(got)
		if err != nil || !cmp.Equal(b, c.in) {
			t.Errorf("%s: encode %v = %v, %v; want %v", c.name, got, b, err, c.in)
		}
	}
	if _, err := (codec{f: formats["uint8"], scale: 1, typ: convert.TypeInt}).encode(int64(300)); !errors.Is(err, convert.ErrOutOfRange) {
		t.Errorf("uint8 300: %v", err)
	}
	if _, err := (codec{f: formats["uint16le"], scale: 1, typ: convert.TypeInt}).decode([]byte{1}); err == nil || !strings.Contains(err.Error(), "needs 2 bytes") {
		t.Errorf("short: %v", err)
	}
	if _, err := (codec{f: formats["utf8"], scale: 1, typ: convert.TypeString}).decode([]byte{0xff}); err == nil {
		t.Error("invalid UTF-8 accepted")
	}
}

func le32(u uint32) []byte { return []byte{byte(u), byte(u >> 8), byte(u >> 16), byte(u >> 24)} }

func TestParseConfig(t *testing.T) {
	a, _ := convert.ToAnyMap(map[string]any{"macAddress": "aa:bb:cc:dd:ee:ff", "adapter": "hci1"})
	p, err := parseProtocol(mapper.DeviceSpec{ConfigData: a})
	if err != nil || p.mac != "AA:BB:CC:DD:EE:FF" || p.adapter != "hci1" {
		t.Fatalf("%+v %v", p, err)
	}
	for _, c := range []struct {
		cfg  map[string]any
		want string
	}{
		{map[string]any{}, `"macAddress": convert: missing key`},
		{map[string]any{"macAddress": "aa:bb"}, "not a MAC address"},
		{map[string]any{"macAddress": "aa:bb:cc:dd:ee:ff", "adapter": "/org/bluez/hci0"}, "not an adapter name"},
		{map[string]any{"macAddress": "aa:bb:cc:dd:ee:ff", "mac": "x"}, `"mac": convert: unknown key`},
	} {
		a, _ := convert.ToAnyMap(c.cfg)
		if _, err := parseProtocol(mapper.DeviceSpec{ConfigData: a}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v lacks %q", c.cfg, err, c.want)
		}
	}
	a, _ = convert.ToAnyMap(map[string]any{"characteristicUUID": "2A6E", "serviceUUID": "0x181a", "dataFormat": "int16le", "scale": 0.01, "notify": true})
	v, err := parseVisitor(mapper.PropertySpec{Name: "t", Type: convert.TypeDouble, VisitorConfig: a})
	if err != nil || v.char != "00002a6e-0000-1000-8000-00805f9b34fb" || v.service != "0000181a-0000-1000-8000-00805f9b34fb" || !v.notify {
		t.Fatalf("%+v %v", v, err)
	}
	for _, c := range []struct {
		typ  convert.Type
		cfg  map[string]any
		want string
	}{
		{convert.TypeInt, map[string]any{}, `"characteristicUUID": convert: missing key`},
		{convert.TypeInt, map[string]any{"characteristicUUID": "xyz"}, "not a UUID"},
		{convert.TypeInt, map[string]any{"characteristicUUID": "2a6e", "dataFormat": "int24"}, `"dataFormat"`},
		{convert.TypeString, map[string]any{"characteristicUUID": "2a6e", "dataFormat": "uint8"}, "needs dataFormat raw or utf8"},
		{convert.TypeInt, map[string]any{"characteristicUUID": "2a6e", "dataFormat": "raw"}, "needs a numeric dataFormat"},
		{convert.TypeBoolean, map[string]any{"characteristicUUID": "2a6e", "dataFormat": "float32le"}, "integer dataFormat"},
		{convert.TypeInt, map[string]any{"characteristicUUID": "2a6e", "writeType": "fast"}, `"writeType"`},
	} {
		a, _ := convert.ToAnyMap(c.cfg)
		if _, err := parseVisitor(mapper.PropertySpec{Name: "p", Type: c.typ, VisitorConfig: a}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v lacks %q", c.cfg, err, c.want)
		}
	}
}

// FuzzCodec: decoding any bytes in any format never panics; decoded values
// encode back to bytes that decode to the same value.
func FuzzCodec(f *testing.F) {
	f.Add("int16le", 0.01, uint8(0), []byte{0x66, 0x08})
	f.Add("float32be", 1.0, uint8(0), []byte{0x41, 0xac, 0, 0})
	f.Add("utf8", 1.0, uint8(1), []byte("xhello"))
	f.Add("uint32le", 2.0, uint8(0), []byte{1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, name string, scale float64, offset uint8, b []byte) {
		fm, ok := formats[name]
		if !ok || scale == 0 || math.IsNaN(scale) || math.IsInf(scale, 0) || math.Abs(scale) > 1e6 || math.Abs(scale) < 1e-6 {
			return
		}
		typ := convert.TypeDouble
		switch {
		case fm.name == "utf8":
			typ = convert.TypeString
		case fm.name == "raw":
			typ = convert.TypeBytes
		}
		c := codec{f: fm, scale: scale, offset: int(offset % 4), typ: typ}
		v, err := c.decode(b)
		if err != nil {
			return
		}
		c.offset = 0
		enc, err := c.encode(v)
		if err != nil {
			return
		}
		v2, err := c.decode(enc)
		if err != nil {
			t.Fatalf("decode(encode(%v)) = %v", v, err)
		}
		if f1, ok := v.(float64); ok {
			if f2, _ := v2.(float64); math.Abs(f1-f2) > 1e-6*math.Max(1, math.Abs(f1)) {
				t.Fatalf("%s: %v -> %v -> %v", name, b, v, v2)
			}
			return
		}
		if !cmp.Equal(v, v2) {
			t.Fatalf("%s: %v -> %v -> %v", name, b, v, v2)
		}
	})
}
