package opcua

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/gopcua/opcua/ua"

	"github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1/convert"
	"github.com/kubeedge-go/kubeedge/pkg/mapper"
)

func spec(t testing.TB, m map[string]any) mapper.DeviceSpec {
	t.Helper()
	a, err := convert.ToAnyMap(m)
	if err != nil {
		t.Fatal(err)
	}
	return mapper.DeviceSpec{ConfigData: a}
}

func TestParseProtocol(t *testing.T) {
	p, err := parseProtocol(spec(t, map[string]any{"url": "opc.tcp://127.0.0.1:4840/", "securityPolicy": "Basic256Sha256", "securityMode": "SignAndEncrypt",
		"certFile": "/c.pem", "keyFile": "/k.pem", "userName": "u", "password": "p"}))
	if err != nil || p.policy != ua.SecurityPolicyURIBasic256Sha256 || p.mode != ua.MessageSecurityModeSignAndEncrypt || p.username != "u" {
		t.Fatalf("%+v %v", p, err)
	}
	for _, c := range []struct {
		cfg  map[string]any
		want string
	}{
		{map[string]any{}, `"url": convert: missing key`},
		{map[string]any{"url": "http://x"}, "not an opc.tcp"},
		{map[string]any{"url": "opc.tcp://h:1", "securityPolicy": "Basic512"}, `"securityPolicy"`},
		{map[string]any{"url": "opc.tcp://h:1", "securityPolicy": "Basic256Sha256"}, "needs Sign or SignAndEncrypt"},
		{map[string]any{"url": "opc.tcp://h:1", "securityMode": "Sign"}, "needs a securityPolicy other than None"},
		{map[string]any{"url": "opc.tcp://h:1", "securityPolicy": "Basic256Sha256", "securityMode": "Sign"}, "needs certFile and keyFile"},
		{map[string]any{"url": "opc.tcp://h:1", "username": "u"}, "username and password go together"},
		{map[string]any{"url": "opc.tcp://h:1", "username": "u", "userName": "v", "password": "p"}, "not both"},
		{map[string]any{"url": "opc.tcp://h:1", "endpoint": "x"}, `"endpoint": convert: unknown key`},
	} {
		_, err := parseProtocol(spec(t, c.cfg))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v lacks %q", c.cfg, err, c.want)
		}
	}
}

func TestParseVisitor(t *testing.T) {
	a, _ := convert.ToAnyMap(map[string]any{"nodeID": "ns=1;s=Temperature", "subscribe": true, "samplingInterval": 50.0})
	v, err := parseVisitor(mapper.PropertySpec{Name: "t", Type: convert.TypeDouble, VisitorConfig: a})
	if err != nil || !v.subscribe || v.nodeID.String() != "ns=1;s=Temperature" {
		t.Fatalf("%+v %v", v, err)
	}
	a, _ = convert.ToAnyMap(map[string]any{"nodeID": "ns=x;q=1"})
	if _, err := parseVisitor(mapper.PropertySpec{Name: "t", Type: convert.TypeDouble, VisitorConfig: a}); !errors.Is(err, convert.ErrSyntax) {
		t.Errorf("bad node id: %v", err)
	}
	a, _ = convert.ToAnyMap(map[string]any{"nodeId": "ns=1;i=1"})
	if _, err := parseVisitor(mapper.PropertySpec{Name: "t", Type: convert.TypeDouble, VisitorConfig: a}); err == nil || !strings.Contains(err.Error(), `"nodeId": convert: unknown key`) {
		t.Errorf("misspelt key: %v", err)
	}
}

func TestVariants(t *testing.T) {
	for _, c := range []struct {
		t    ua.TypeID
		in   any
		want any
	}{
		{ua.TypeIDInt32, int64(-5), int32(-5)},
		{ua.TypeIDUint16, 7.0, uint16(7)},
		{ua.TypeIDFloat, 2.5, float32(2.5)},
		{ua.TypeIDDouble, int64(3), 3.0},
		{ua.TypeIDBoolean, true, true},
		{ua.TypeIDString, "x", "x"},
		{ua.TypeIDByteString, []byte{1}, []byte{1}},
	} {
		v, err := toVariant(c.t, c.in)
		if err != nil {
			t.Fatalf("%v %v: %v", c.t, c.in, err)
		}
		got, err := fromVariant(v)
		if err != nil || !equal(got, c.want) {
			t.Errorf("%v %v -> %v (%v), want %v", c.t, c.in, got, err, c.want)
		}
	}
	for _, c := range []struct {
		t  ua.TypeID
		in any
	}{{ua.TypeIDUint16, int64(70000)}, {ua.TypeIDInt32, 1.5}, {ua.TypeIDByte, int64(-1)}, {ua.TypeIDFloat, math.MaxFloat64}, {ua.TypeIDString, int64(1)}, {ua.TypeIDGUID, "x"}} {
		if _, err := toVariant(c.t, c.in); err == nil {
			t.Errorf("%v %v accepted", c.t, c.in)
		}
	}
}

func equal(a, b any) bool {
	if ab, ok := a.([]byte); ok {
		bb, ok := b.([]byte)
		return ok && string(ab) == string(bb)
	}
	return a == b
}

// FuzzVisitor: visitor and protocol parsing never panic.
func FuzzVisitor(f *testing.F) {
	f.Add("ns=1;s=Temperature", "opc.tcp://127.0.0.1:4840/", "Basic256Sha256")
	f.Add("i=2258", "opc.tcp://[::1]:1/x", "None")
	f.Add("ns=2;g=5ce9dbce-5d79-434c-9ac3-1cfba9a6e92c", "opc.tcp://h", "")
	f.Add("ns=3;b=YWJj", "x", "Sign")
	f.Fuzz(func(t *testing.T, node, url, policy string) {
		a, err := convert.ToAnyMap(map[string]any{"nodeID": node})
		if err != nil {
			return
		}
		v, err := parseVisitor(mapper.PropertySpec{Name: "p", Type: convert.TypeString, VisitorConfig: a})
		if err == nil && v.nodeID == nil {
			t.Fatalf("accepted %q without a node id", node)
		}
		a, err = convert.ToAnyMap(map[string]any{"url": url, "securityPolicy": policy})
		if err != nil {
			return
		}
		_, _ = parseProtocol(mapper.DeviceSpec{ConfigData: a})
	})
}

// FuzzVariant: converting any desired value to any node type never panics,
// and what converts reads back.
func FuzzVariant(f *testing.F) {
	f.Add(uint8(6), int64(5), 1.5, "x", true)
	f.Add(uint8(10), int64(-1), 3.4e39, "", false)
	f.Fuzz(func(t *testing.T, typ uint8, i int64, fl float64, s string, b bool) {
		tid := ua.TypeID(typ % 16)
		for _, in := range []any{i, fl, s, b, []byte(s)} {
			v, err := toVariant(tid, in)
			if err != nil {
				continue
			}
			if _, err := fromVariant(v); err != nil {
				t.Fatalf("%v %v: converted but does not read back: %v", tid, in, err)
			}
		}
	})
}
