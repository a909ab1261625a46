package wire

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzDecode checks that Decode never panics and that whatever it accepts
// survives an Encode/Decode round trip unchanged.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(kubeedgeFrame))
	f.Add([]byte(`{"header":{"msg_id":"1"},"route":{"operation":"keepalive"},"content":"ping"}`))
	f.Add([]byte(`{"header":{"msg_id":"1","parent_msg_id":"2"},"route":{"operation":"response","resource":"null/node/n"},"content":"OK"}`))
	f.Add([]byte(`{"header":{"msg_id":"1"},"route":{"operation":"delete","resource":"default/pod/../x"}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, frame []byte) {
		m, err := Decode(frame, 1<<16)
		if err != nil {
			return
		}
		b, err := Encode(m)
		if err != nil {
			t.Fatalf("Encode of a decoded message failed: %v", err)
		}
		m2, err := Decode(b, 1<<20)
		if err != nil {
			t.Fatalf("re-decode of %s failed: %v", b, err)
		}
		b2, err := Encode(m2)
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("round trip changed the message:\n%s\n%s", b, b2)
		}
	})
}

// FuzzParseResource checks the resource-key parser never panics and that
// accepted keys format back to themselves and never contain path tricks.
func FuzzParseResource(f *testing.F) {
	for _, s := range []string{"default/pod/nginx", "null/node/edge-node", "default/podlist", "default/pod/../../x", "a//b", "default/pod/a.b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseResource(s)
		if err != nil {
			return
		}
		if r.String() != s {
			t.Fatalf("ParseResource(%q).String() = %q", s, r.String())
		}
		for _, bad := range []string{"..", "\\", "\x00", "//"} {
			if bytes.Contains([]byte(r.Name+"/"+r.Namespace), []byte(bad)) {
				t.Fatalf("accepted %q containing %q", s, bad)
			}
		}
	})
}

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 'a'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ReadFrame(bytes.NewReader(data), 1024)
	})
}

// FuzzDecodeDeviceReport checks that the upstream twin report decoder never
// panics and that what it accepts re-encodes to a batch it accepts again.
func FuzzDecodeDeviceReport(f *testing.F) {
	f.Add([]byte(`{"devices":[{"namespace":"default","name":"sensor","seq":3,"state":"online","twins":[{"propertyName":"temp","reported":{"value":"21","metadata":{"timestamp":"1"}}}]}]}`))
	f.Add([]byte(`{"devices":[]}`))
	f.Add([]byte(`{"devices":[{"namespace":"","name":"x","seq":1}]}`))
	f.Add([]byte(`{"devices":[{"namespace":"a","name":"b","seq":1,"twins":[{"propertyName":"p"},{"propertyName":"p"}]}]}`))
	f.Add([]byte(`{"devices":[{"namespace":"a","name":"b","seq":1}]} {}`))
	f.Fuzz(func(t *testing.T, content []byte) {
		b, err := DecodeDeviceReport(content)
		if err != nil {
			return
		}
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("marshal accepted batch: %v", err)
		}
		if _, err := DecodeDeviceReport(raw); err != nil {
			t.Fatalf("re-decode of %s: %v", raw, err)
		}
	})
}
