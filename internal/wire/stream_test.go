package wire

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestStreamRequestRoundTrip(t *testing.T) {
	id := NewStreamID()
	if err := ValidateStreamID(id); err != nil {
		t.Fatalf("NewStreamID() = %q: %v", id, err)
	}
	if NewStreamID() == id {
		t.Fatal("NewStreamID repeated itself")
	}
	req := StreamRequest{ID: id, Service: StreamServiceKubelet}
	m, err := NewStreamRequest(time.UnixMilli(1700000000000), req)
	if err != nil {
		t.Fatal(err)
	}
	frame, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	want := `"route":{"source":"cloudstream","group":"stream","operation":"query","resource":"null/stream/` + id + `"}`
	if !strings.Contains(string(frame), want) {
		t.Fatalf("frame %s does not contain %s", frame, want)
	}
	got, err := Decode(frame, 0)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseStreamRequest(got)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(req, parsed); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

func TestStreamRequestRejects(t *testing.T) {
	id := NewStreamID()
	good := func() Message {
		m, err := NewStreamRequest(time.Now(), StreamRequest{ID: id, Service: StreamServiceKubelet})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	tests := []struct {
		name    string
		mutate  func(*Message)
		wantErr string
	}{
		{"wrong type", func(m *Message) { m.Resource.Type = TypePod }, `resource type is "pod"`},
		{"wrong operation", func(m *Message) { m.Operation = OpInsert }, `operation is "insert"`},
		{"not json", func(m *Message) { m.Content = json.RawMessage(`{`) }, "content: unexpected EOF"},
		{"unknown field", func(m *Message) {
			m.Content = json.RawMessage(`{"id":"` + id + `","service":"kubelet","target":"10.0.0.1:22"}`)
		}, `unknown field "target"`},
		{"trailing", func(m *Message) { m.Content = json.RawMessage(`{"id":"` + id + `","service":"kubelet"}{}`) }, "trailing data"},
		{"other service", func(m *Message) { m.Content = json.RawMessage(`{"id":"` + id + `","service":"ssh"}`) }, `service "ssh" is unknown`},
		{"short id", func(m *Message) { m.Content = json.RawMessage(`{"id":"abc","service":"kubelet"}`) }, "is 3 characters, want 32"},
		{"upper-case id", func(m *Message) {
			m.Content = json.RawMessage(`{"id":"` + strings.ToUpper(id[:1]) + strings.Repeat("A", 31) + `","service":"kubelet"}`)
		}, "only lower-case hex digits"},
		{"id mismatch", func(m *Message) { m.Resource.Name = NewStreamID() }, "differs from resource name"},
		{"no content", func(m *Message) { m.Content = nil }, "content: EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := good()
			tt.mutate(&m)
			_, err := ParseStreamRequest(m)
			if err == nil || !errors.Is(err, ErrBadStreamRequest) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseStreamRequest error = %v, want ErrBadStreamRequest containing %q", err, tt.wantErr)
			}
		})
	}
	if _, err := NewStreamRequest(time.Now(), StreamRequest{ID: "x", Service: StreamServiceKubelet}); !errors.Is(err, ErrBadStreamRequest) {
		t.Fatalf("NewStreamRequest with a bad id: %v", err)
	}
}

// FuzzParseStreamRequest checks that whatever frame decodes, a stream request
// parsed from it is valid and re-encodes to the same request.
func FuzzParseStreamRequest(f *testing.F) {
	id := "0123456789abcdef0123456789abcdef"
	f.Add([]byte(`{"header":{"msg_id":"1"},"route":{"operation":"query","resource":"null/stream/` + id + `"},"content":{"id":"` + id + `","service":"kubelet"}}`))
	f.Add([]byte(`{"header":{"msg_id":"1"},"route":{"operation":"query","resource":"null/stream/` + id + `"},"content":{"id":"` + id + `"}}`))
	f.Add([]byte(`{"header":{"msg_id":"1"},"route":{"operation":"query","resource":"default/stream/x"},"content":"x"}`))
	f.Fuzz(func(t *testing.T, frame []byte) {
		m, err := Decode(frame, 1<<16)
		if err != nil {
			return
		}
		r, err := ParseStreamRequest(m)
		if err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("parsed an invalid request %+v: %v", r, err)
		}
		m2, err := NewStreamRequest(time.Now(), r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := ParseStreamRequest(m2)
		if err != nil || r2 != r {
			t.Fatalf("round trip: %+v, %v; want %+v", r2, err, r)
		}
	})
}
