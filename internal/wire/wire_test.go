package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseResource(t *testing.T) {
	tests := []struct {
		in      string
		want    Resource
		wantErr string
	}{
		{in: "default/pod/nginx", want: Resource{Namespace: "default", Type: TypePod, Name: "nginx"}},
		{in: "null/node/edge-node", want: Resource{Type: TypeNode, Name: "edge-node"}},
		{in: "kube-system/configmap/a.b-c", want: Resource{Namespace: "kube-system", Type: TypeConfigMap, Name: "a.b-c"}},
		{in: "default/podlist", want: Resource{Namespace: "default", Type: TypePodList}},
		{in: "default/pod/../../etc/passwd", wantErr: "is not {namespace}/{type}[/{name}]"},
		{in: "default/pod/..", wantErr: "empty label"},
		{in: "../pod/x", wantErr: `character '.'`},
		{in: "default/pod/a%2fb", wantErr: `character '%'`},
		{in: "default/pod/A", wantErr: `character 'A'`},
		{in: "default/pod/a\x00b", wantErr: `character '\x00'`},
		{in: "default/pod/", wantErr: "empty name"},
		{in: "/pod/x", wantErr: "empty namespace"},
		{in: "default/bogus/x", wantErr: `unknown resource type "bogus"`},
		{in: "pod", wantErr: "is not {namespace}/{type}[/{name}]"},
		{in: "default/pod/-x", wantErr: `character '-'`},
		{in: "default/pod/" + strings.Repeat("a", 254), wantErr: "more than 253"},
		{in: strings.Repeat("a", 64) + "/pod/x", wantErr: "more than 63"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseResource(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrBadResource) {
					t.Fatalf("ParseResource(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseResource(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Fatalf("ParseResource(%q) (-want +got):\n%s", tt.in, diff)
			}
			if got.String() != tt.in {
				t.Fatalf("String() = %q, want %q", got.String(), tt.in)
			}
		})
	}
}

func TestNodeResource(t *testing.T) {
	nr, err := ParseNodeResource("node/edge-1/default/secret/s1")
	if err != nil {
		t.Fatal(err)
	}
	want := NodeResource{Node: "edge-1", Resource: Resource{Namespace: "default", Type: TypeSecret, Name: "s1"}}
	if diff := cmp.Diff(want, nr); diff != "" {
		t.Fatal(diff)
	}
	if nr.String() != "node/edge-1/default/secret/s1" {
		t.Fatalf("String() = %q", nr.String())
	}
	for _, bad := range []string{"edge-1/default/pod/x", "node/EDGE/default/pod/x", "node/edge-1", "node//default/pod/x"} {
		if _, err := ParseNodeResource(bad); !errors.Is(err, ErrBadResource) {
			t.Errorf("ParseNodeResource(%q) = %v, want ErrBadResource", bad, err)
		}
	}
}

// A frame as KubeEdge's cloudcore sends it.
const kubeedgeFrame = `{"header":{"msg_id":"5c3a2b4e-8f1d-4d7a-9c2e-1a2b3c4d5e6f","parent_msg_id":"","timestamp":1700000000000,"resourceversion":"123","sync":true,"type":""},"route":{"source":"edgecontroller","group":"resource","operation":"insert","resource":"default/pod/nginx"},"content":{"metadata":{"name":"nginx"}}}`

func TestDecodeKubeEdgeFrame(t *testing.T) {
	m, err := Decode([]byte(kubeedgeFrame), 0)
	if err != nil {
		t.Fatal(err)
	}
	want := Message{
		Header:    Header{ID: "5c3a2b4e-8f1d-4d7a-9c2e-1a2b3c4d5e6f", Timestamp: 1700000000000, ResourceVersion: "123", Sync: true},
		Source:    SourceEdgeController,
		Group:     GroupResource,
		Operation: OpInsert,
		Resource:  Resource{Namespace: "default", Type: TypePod, Name: "nginx"},
		Content:   json.RawMessage(`{"metadata":{"name":"nginx"}}`),
	}
	if diff := cmp.Diff(want, m); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	// Round trip: encoding and decoding again gives the same message.
	b, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := Decode(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m, m2); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name, frame, wantErr string
		is                   error
		max                  int
	}{
		{name: "not json", frame: `{"header":`, wantErr: "unexpected EOF", is: ErrMalformed},
		{name: "garbage", frame: "\x00\x01\x02", wantErr: "invalid character", is: ErrMalformed},
		{name: "trailing", frame: kubeedgeFrame + `{}`, wantErr: "trailing data", is: ErrMalformed},
		{name: "no id", frame: `{"header":{},"route":{"operation":"keepalive"}}`, wantErr: "msg_id is empty", is: ErrMalformed},
		{name: "unknown op", frame: `{"header":{"msg_id":"1"},"route":{"operation":"explode","resource":"default/pod/x"}}`, wantErr: `"explode"`, is: ErrUnknownOperation},
		{name: "path trick", frame: `{"header":{"msg_id":"1"},"route":{"operation":"insert","resource":"default/pod/../x"}}`, wantErr: "is not {namespace}", is: ErrBadResource},
		{name: "no resource", frame: `{"header":{"msg_id":"1"},"route":{"operation":"insert"}}`, wantErr: "route.resource is empty", is: ErrMalformed},
		{name: "orphan response", frame: `{"header":{"msg_id":"1"},"route":{"operation":"response"}}`, wantErr: "without header.parent_msg_id", is: ErrMalformed},
		{name: "too large", frame: kubeedgeFrame, max: 64, wantErr: "limit 64", is: ErrFrameTooLarge},
		{name: "wrong type", frame: `{"header":{"msg_id":7},"route":{}}`, wantErr: "cannot unmarshal number", is: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.frame), tt.max)
			if err == nil || !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Decode error = %v, want %v containing %q", err, tt.is, tt.wantErr)
			}
		})
	}
}

func TestAckAndKeepalive(t *testing.T) {
	now := time.UnixMilli(1700000000123)
	parent, err := New(now, SourceEdgeController, GroupResource, OpUpdate, Resource{Namespace: "default", Type: TypeConfigMap, Name: "c"}, map[string]string{"a": "b"})
	if err != nil {
		t.Fatal(err)
	}
	ack := NewAck(now, SourceMetaManager, parent)
	b, err := Encode(ack)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got.Header.ParentID != parent.Header.ID || got.Operation != OpResponse || got.Header.Timestamp != 1700000000123 {
		t.Fatalf("ack = %+v", got)
	}
	if s, ok := got.ContentString(); !ok || s != ContentOK {
		t.Fatalf("ack content = %q, %v", s, ok)
	}
	ka, err := New(now, SourceEdgeHub, GroupHub, OpKeepalive, Resource{}, "ping")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = Encode(ka)
	if !bytes.Contains(b, []byte(`"content":"ping"`)) || !bytes.Contains(b, []byte(`"resource":""`)) {
		t.Fatalf("keepalive frame = %s", b)
	}
	if _, err := Decode(b, 0); err != nil {
		t.Fatalf("keepalive does not decode: %v", err)
	}
}

func TestNewIDIsUUIDv4(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := NewID()
		if len(id) != 36 || id[14] != '4' || !strings.ContainsRune("89ab", rune(id[19])) {
			t.Fatalf("NewID() = %q is not a UUID v4", id)
		}
		if seen[id] {
			t.Fatalf("NewID() repeated %q", id)
		}
		seen[id] = true
	}
}

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	for _, f := range []string{"a", "", kubeedgeFrame} {
		if err := WriteFrame(&buf, []byte(f)); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"a", "", kubeedgeFrame} {
		got, err := ReadFrame(&buf, 1024)
		if err != nil || string(got) != want {
			t.Fatalf("ReadFrame = %q, %v; want %q", got, err, want)
		}
	}
	// A huge announced length is refused without allocating it.
	big := []byte{0xff, 0xff, 0xff, 0xff}
	if _, err := ReadFrame(bytes.NewReader(big), 1024); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("ReadFrame(huge) = %v, want ErrFrameTooLarge", err)
	}
}

func BenchmarkDecode(b *testing.B) {
	frame := []byte(kubeedgeFrame)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := Decode(frame, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	m, err := Decode([]byte(kubeedgeFrame), 0)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(m); err != nil {
			b.Fatal(err)
		}
	}
}
