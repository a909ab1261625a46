package modbus

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1/convert"
	"github.com/kubeedge-go/kubeedge/pkg/mapper"
)

func anyMap(t testing.TB, m map[string]any) map[string]*anypb.Any {
	t.Helper()
	a, err := convert.ToAnyMap(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestDecodeRegisters(t *testing.T) {
	f32 := math.Float32bits(21.5) // 0x41AC0000
	cases := []struct {
		name string
		v    visitor
		regs []uint16
		want any
	}{
		{"uint16", visitor{typ: convert.TypeInt, limit: 1, scale: 1}, []uint16{1000}, int64(1000)},
		{"int16 signed", visitor{typ: convert.TypeInt, limit: 1, scale: 1, signed: true}, []uint16{0xfffb}, int64(-5)},
		{"uint32 big-endian words", visitor{typ: convert.TypeInt, limit: 2, scale: 1}, []uint16{0x0001, 0x0002}, int64(0x00010002)},
		{"uint32 word swap", visitor{typ: convert.TypeInt, limit: 2, scale: 1, swapRegister: true}, []uint16{0x0002, 0x0001}, int64(0x00010002)},
		{"uint16 byte swap", visitor{typ: convert.TypeInt, limit: 1, scale: 1, swapBytes: true}, []uint16{0x3412}, int64(0x1234)},
		{"scaled", visitor{typ: convert.TypeDouble, limit: 1, scale: 0.1}, []uint16{215}, 21.5},
		{"int scaled", visitor{typ: convert.TypeInt, limit: 1, scale: 10}, []uint16{7}, 70.0},
		{"float32", visitor{typ: convert.TypeFloat, limit: 2, scale: 1}, []uint16{uint16(f32 >> 16), uint16(f32)}, 21.5},
		{"float32 both swaps", visitor{typ: convert.TypeFloat, limit: 2, scale: 1, swapRegister: true, swapBytes: true},
			[]uint16{swap16(uint16(f32)), swap16(uint16(f32 >> 16))}, 21.5},
		{"float64", visitor{typ: convert.TypeDouble, limit: 4, scale: 1}, regs64(math.Float64bits(-0.125)), -0.125},
		{"bool", visitor{typ: convert.TypeBoolean, limit: 1, scale: 1}, []uint16{3}, true},
		{"string", visitor{typ: convert.TypeString, limit: 3, scale: 1}, []uint16{0x6869, 0x2100, 0}, "hi!"},
		{"bytes", visitor{typ: convert.TypeBytes, limit: 1, scale: 1}, []uint16{0x0102}, []byte{1, 2}},
	}
	for _, c := range cases {
		got, err := c.v.decodeRegisters(c.regs)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, diff)
		}
		// Writes are the inverse (where the value is exact).
		back, err := c.v.encodeRegisters(got)
		if err != nil {
			t.Errorf("%s: encode %v: %v", c.name, got, err)
			continue
		}
		if c.name != "bool" && c.name != "int scaled" {
			if diff := cmp.Diff(c.regs, back); diff != "" {
				t.Errorf("%s: encode(decode) (-want +got):\n%s", c.name, diff)
			}
		}
	}
}

func swap16(u uint16) uint16 { return u<<8 | u>>8 }

func regs64(u uint64) []uint16 {
	return []uint16{uint16(u >> 48), uint16(u >> 32), uint16(u >> 16), uint16(u)}
}

func TestEncodeErrors(t *testing.T) {
	cases := []struct {
		name  string
		v     visitor
		value any
	}{
		{"too big for uint16", visitor{typ: convert.TypeInt, limit: 1, scale: 1}, int64(70000)},
		{"negative unsigned", visitor{typ: convert.TypeInt, limit: 1, scale: 1}, int64(-1)},
		{"fraction for an INT register", visitor{typ: convert.TypeInt, limit: 1, scale: 1}, 2.5},
		{"string too long", visitor{typ: convert.TypeString, limit: 1, scale: 1}, "abc"},
	}
	for _, c := range cases {
		if _, err := c.v.encodeRegisters(c.value); !errors.Is(err, convert.ErrOutOfRange) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if _, err := (visitor{typ: convert.TypeInt, limit: 2, scale: 1}).encodeBits(int64(4)); !errors.Is(err, convert.ErrOutOfRange) {
		t.Errorf("coils: %v", err)
	}
	bits, err := (visitor{typ: convert.TypeInt, limit: 3, scale: 1}).encodeBits(int64(5))
	if err != nil || !cmp.Equal(bits, []bool{true, false, true}) {
		t.Errorf("coils 5: %v %v", bits, err)
	}
	v, _ := (visitor{typ: convert.TypeInt, limit: 3, scale: 1}).decodeBits([]bool{true, false, true})
	if v != int64(5) {
		t.Errorf("decode coils: %v", v)
	}
}

func TestParseProtocol(t *testing.T) {
	tcp, err := parseProtocol(mapper.DeviceSpec{ConfigData: anyMap(t, map[string]any{"ip": "127.0.0.1", "port": float64(1502), "slaveID": float64(1)})})
	if err != nil || tcp.rtu || tcp.port != 1502 || tcp.slaveID != 1 {
		t.Fatalf("tcp %+v %v", tcp, err)
	}
	rtu, err := parseProtocol(mapper.DeviceSpec{ConfigData: anyMap(t, map[string]any{
		"serialPort": "/dev/ttyS0", "baudRate": float64(9600), "dataBits": float64(8), "parity": "even", "stopBits": float64(1), "slaveID": float64(2)})})
	if err != nil || !rtu.rtu || rtu.baud != 9600 || rtu.parity != "E" || rtu.slaveID != 2 {
		t.Fatalf("rtu %+v %v", rtu, err)
	}
	for _, c := range []struct {
		cfg  map[string]any
		want []string
	}{
		{map[string]any{"ip": "127.0.0.1"}, []string{`"port": convert: missing key`}},
		{map[string]any{"ip": "127.0.0.1", "port": 502, "slaveId": 1}, []string{`"slaveId": convert: unknown key`}},
		{map[string]any{"ip": "127.0.0.1", "port": 70000}, []string{`"port"`, "out of range"}},
		{map[string]any{"serialPort": "/dev/x", "parity": "mark"}, []string{`"parity"`, "mark"}},
		{map[string]any{"serialPort": "/dev/x", "ip": "1.2.3.4", "port": 1}, []string{"not both"}},
		{map[string]any{}, []string{"give ip and port"}},
		{map[string]any{"ip": "127.0.0.1", "port": "502x"}, []string{`"port"`, "wrong type"}},
	} {
		_, err := parseProtocol(mapper.DeviceSpec{ConfigData: anyMap(t, c.cfg)})
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %v lacks %q", c.cfg, err, w)
			}
		}
	}
}

func TestParseVisitor(t *testing.T) {
	v, err := parseVisitor(mapper.PropertySpec{Name: "t", Type: convert.TypeFloat, VisitorConfig: anyMap(t, map[string]any{
		"register": "HoldingRegister", "offset": float64(2), "limit": float64(2), "scale": 0.5, "isSwap": true, "isRegisterSwap": false})})
	if err != nil || v.offset != 2 || v.limit != 2 || v.scale != 0.5 || !v.swapBytes {
		t.Fatalf("%+v %v", v, err)
	}
	for _, c := range []struct {
		typ  convert.Type
		cfg  map[string]any
		want string
	}{
		{convert.TypeInt, map[string]any{"register": "HoldingRegisters", "offset": 0}, "not one of"},
		{convert.TypeInt, map[string]any{"register": "HoldingRegister"}, `"offset": convert: missing key`},
		{convert.TypeInt, map[string]any{"register": "HoldingRegister", "offset": 0, "limit": 3}, "needs limit 1, 2 or 4"},
		{convert.TypeFloat, map[string]any{"register": "CoilRegister", "offset": 0}, "cannot be read from CoilRegister"},
		{convert.TypeBoolean, map[string]any{"register": "CoilRegister", "offset": 0, "limit": 2}, "needs limit 1"},
		{convert.TypeInt, map[string]any{"register": "HoldingRegister", "offset": 0, "scale": 0}, "scale must not be 0"},
		{convert.TypeInt, map[string]any{"register": "HoldingRegister", "offset": 65535, "limit": 2}, "passes the last address"},
		{convert.TypeInt, map[string]any{"register": "HoldingRegister", "offset": 0, "swap": true}, `"swap": convert: unknown key`},
	} {
		_, err := parseVisitor(mapper.PropertySpec{Name: "p", Type: c.typ, VisitorConfig: anyMap(t, c.cfg)})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v lacks %q", c.cfg, err, c.want)
		}
	}
}

// FuzzRegisters: decoding never panics; whatever decodes encodes back to
// registers that decode to the same value.
func FuzzRegisters(f *testing.F) {
	f.Add(uint8(0), uint8(1), false, false, false, 1.0, []byte{0x03, 0xe8})
	f.Add(uint8(2), uint8(2), true, true, false, 1.0, []byte{0x41, 0xac, 0, 0})
	f.Add(uint8(3), uint8(4), false, true, true, 0.5, []byte{0x3f, 0xc0, 0, 0, 0, 0, 0, 0})
	f.Add(uint8(4), uint8(3), false, false, false, 1.0, []byte("hello\x00"))
	f.Fuzz(func(t *testing.T, ti, limit uint8, swapB, swapR, signed bool, scale float64, raw []byte) {
		types := []convert.Type{convert.TypeInt, convert.TypeBoolean, convert.TypeFloat, convert.TypeDouble, convert.TypeString, convert.TypeBytes}
		v := visitor{register: Holding, typ: types[int(ti)%len(types)], limit: uint16(limit%8) + 1, scale: scale, swapBytes: swapB, swapRegister: swapR, signed: signed}
		if v.checkType() != nil || scale == 0 || math.IsNaN(scale) || math.IsInf(scale, 0) || math.Abs(scale) > 1e6 || math.Abs(scale) < 1e-6 {
			return
		}
		regs := make([]uint16, v.limit)
		for i := range regs {
			if 2*i+1 < len(raw) {
				regs[i] = uint16(raw[2*i])<<8 | uint16(raw[2*i+1])
			}
		}
		val, err := v.decodeRegisters(regs)
		if err != nil {
			return
		}
		enc, err := v.encodeRegisters(val)
		if err != nil {
			return // e.g. a scaled value that no longer fits exactly
		}
		val2, err := v.decodeRegisters(enc)
		if err != nil {
			t.Fatalf("decode of encoded %v: %v", enc, err)
		}
		if f1, ok := val.(float64); ok {
			f2 := val2.(float64)
			if math.Abs(f1-f2) > 1e-6*math.Max(1, math.Abs(f1)) {
				t.Fatalf("%+v: %v -> %v -> %v", v, regs, val, val2)
			}
			return
		}
		if v.typ == convert.TypeString {
			return // trailing NULs are dropped by design
		}
		if !cmp.Equal(val, val2) {
			t.Fatalf("%+v: %v -> %v -> %v", v, regs, val, val2)
		}
	})
}

// FuzzConfig: protocol and visitor parsing never panics on any map.
func FuzzConfig(f *testing.F) {
	f.Add("ip", "127.0.0.1", "port", 502.0, "register", "HoldingRegister")
	f.Add("serialPort", "/dev/x", "baudRate", 9600.0, "offset", "7")
	f.Fuzz(func(t *testing.T, k1, s1, k2 string, n float64, k3, s3 string) {
		m, err := convert.ToAnyMap(map[string]any{k1: s1, k2: n, k3: s3})
		if err != nil {
			return
		}
		_, _ = parseProtocol(mapper.DeviceSpec{ConfigData: m})
		for _, typ := range []convert.Type{convert.TypeInt, convert.TypeFloat, convert.TypeBoolean, convert.TypeString} {
			_, _ = parseVisitor(mapper.PropertySpec{Name: "p", Type: typ, VisitorConfig: m})
		}
	})
}
