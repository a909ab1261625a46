package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// clientFrame encodes one masked frame the way an edge sends it.
func clientFrame(fin bool, opcode byte, payload []byte) []byte {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	switch n := len(payload); {
	case n <= 125:
		out = append(out, 0x80|byte(n))
	case n <= 0xffff:
		out = binary.BigEndian.AppendUint16(append(out, 0x80|126), uint16(n))
	default:
		out = binary.BigEndian.AppendUint64(append(out, 0x80|127), uint64(n))
	}
	mask := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	out = append(out, mask[:]...)
	for i, c := range payload {
		out = append(out, c^mask[i&3])
	}
	return out
}

type recordedControl struct {
	opcode  byte
	payload []byte
}

type controlRecorder struct{ sent []recordedControl }

func (c *controlRecorder) writeControl(opcode byte, payload []byte) error {
	c.sent = append(c.sent, recordedControl{opcode, bytes.Clone(payload)})
	return nil
}

func readMessages(t *testing.T, stream []byte, max int) ([][]byte, *controlRecorder, error) {
	t.Helper()
	r := bytes.NewReader(stream)
	rec := &controlRecorder{}
	var msgs [][]byte
	for {
		m, err := readClientMessage(r, r.Read, max, rec)
		if err != nil {
			return msgs, rec, err
		}
		msgs = append(msgs, m)
	}
}

func TestReadClientMessages(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789"), 7000) // 70,000 bytes: the 8-byte length form
	var stream []byte
	stream = append(stream, clientFrame(true, opText, []byte(`{"a":1}`))...)
	stream = append(stream, clientFrame(true, opBinary, nil)...)
	stream = append(stream, clientFrame(false, opText, []byte("frag"))...)
	stream = append(stream, clientFrame(true, opPing, []byte("are you there"))...) // between fragments
	stream = append(stream, clientFrame(false, opContinuation, []byte("ment"))...)
	stream = append(stream, clientFrame(true, opPong, []byte("ignored"))...)
	stream = append(stream, clientFrame(true, opContinuation, []byte("ed"))...)
	stream = append(stream, clientFrame(true, opText, bytes.Repeat([]byte("m"), 300))...) // 2-byte length
	stream = append(stream, clientFrame(true, opText, big)...)
	stream = append(stream, clientFrame(true, opClose, websocket.FormatCloseMessage(websocket.CloseGoingAway, "bye"))...)

	msgs, rec, err := readMessages(t, stream, 0)
	want := []string{`{"a":1}`, "", "fragmented", strings.Repeat("m", 300), string(big)}
	if len(msgs) != len(want) {
		t.Fatalf("read %d messages, want %d (err %v)", len(msgs), len(want), err)
	}
	for i := range want {
		if string(msgs[i]) != want[i] {
			t.Errorf("message %d = %.40q (%d bytes), want %.40q (%d bytes)", i, msgs[i], len(msgs[i]), want[i], len(want[i]))
		}
	}
	if msgs[1] == nil {
		t.Error("an empty message was returned as nil, want an empty slice")
	}
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway || ce.Text != "bye" {
		t.Fatalf("end = %v, want the peer's close 1001 %q", err, "bye")
	}
	wantSent := []recordedControl{
		{opPong, []byte("are you there")},
		{opClose, websocket.FormatCloseMessage(websocket.CloseGoingAway, "")},
	}
	if len(rec.sent) != len(wantSent) {
		t.Fatalf("sent %d control frames, want %d: %+v", len(rec.sent), len(wantSent), rec.sent)
	}
	for i, w := range wantSent {
		if rec.sent[i].opcode != w.opcode || !bytes.Equal(rec.sent[i].payload, w.payload) {
			t.Errorf("control %d = %#x %q, want %#x %q", i, rec.sent[i].opcode, rec.sent[i].payload, w.opcode, w.payload)
		}
	}
}

func TestReadClientMessageRefusesBadFrames(t *testing.T) {
	unmasked := []byte{0x81, 0x02, 'h', 'i'}
	hugeLength := binary.BigEndian.AppendUint64([]byte{0x82, 0x80 | 127}, 1<<62)
	hugeLength = append(hugeLength, 1, 2, 3, 4)
	cases := []struct {
		name   string
		stream []byte
		max    int
		want   error
		text   string
	}{
		{"unmasked", unmasked, 0, ErrWebSocketProtocol, "not masked"},
		{"reserved bits", append([]byte{0xc1}, clientFrame(true, opText, []byte("x"))[1:]...), 0, ErrWebSocketProtocol, "reserved bits"},
		{"unknown opcode", clientFrame(true, 0x3, []byte("x")), 0, ErrWebSocketProtocol, "unknown opcode 0x3"},
		{"fragmented ping", clientFrame(false, opPing, nil), 0, ErrWebSocketProtocol, "fragmented"},
		{"long ping", clientFrame(true, opPing, make([]byte, 126)), 0, ErrWebSocketProtocol, "more than 125"},
		{"lone continuation", clientFrame(true, opContinuation, []byte("x")), 0, ErrWebSocketProtocol, "without a message"},
		{"message inside a message", append(clientFrame(false, opText, []byte("a")), clientFrame(true, opText, []byte("b"))...), 0, ErrWebSocketProtocol, "before the previous one ended"},
		{"1-byte close", clientFrame(true, opClose, []byte{3}), 0, ErrWebSocketProtocol, "1-byte payload"},
		{"reserved close code", clientFrame(true, opClose, []byte{0x03, 0xed}), 0, ErrWebSocketProtocol, "close code 1005"},
		{"close reason not UTF-8", clientFrame(true, opClose, append(websocket.FormatCloseMessage(1000, ""), 0xff)), 0, ErrWebSocketProtocol, "not UTF-8"},
		{"length with the top bit", append(binary.BigEndian.AppendUint64([]byte{0x82, 0x80 | 127}, 1<<63), 1, 2, 3, 4), 0, ErrWebSocketProtocol, "most significant bit"},
		{"over the limit", clientFrame(true, opText, make([]byte, 11)), 10, wire.ErrFrameTooLarge, "limit 10"},
		{"over the limit in fragments", append(clientFrame(false, opText, make([]byte, 6)), clientFrame(true, opContinuation, make([]byte, 6))...), 10, wire.ErrFrameTooLarge, "at least 12 bytes"},
		{"announces 4 EiB", hugeLength, 0, wire.ErrFrameTooLarge, "limit"},
		{"cut in the header", clientFrame(true, opText, make([]byte, 300))[:3], 0, io.ErrUnexpectedEOF, "frame header"},
		{"cut in the payload", clientFrame(true, opText, []byte("hello"))[:8], 0, io.ErrUnexpectedEOF, "frame payload"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msgs, _, err := readMessages(t, c.stream, c.max)
			if len(msgs) != 0 || !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
				t.Fatalf("read %d messages, err %v; want none and an error wrapping %v that says %q", len(msgs), err, c.want, c.text)
			}
		})
	}
}

func TestReadClientMessageEndsCleanlyAtFrameBoundary(t *testing.T) {
	msgs, _, err := readMessages(t, clientFrame(true, opText, []byte("x")), 0)
	if len(msgs) != 1 || !errors.Is(err, io.EOF) {
		t.Fatalf("read %d messages, end %v; want 1 and io.EOF", len(msgs), err)
	}
}

func TestServerFrameHeader(t *testing.T) {
	for _, n := range []int{0, 125, 126, 0xffff, 0x10000} {
		h := appendServerFrameHeader(nil, opText, n)
		// Decode it as gorilla's client would: a final text frame, unmasked, length n.
		if h[0] != 0x81 || h[1]&0x80 != 0 {
			t.Fatalf("%d bytes: header %x is not a final unmasked text frame", n, h)
		}
		var got uint64
		switch l := h[1] & 0x7f; l {
		case 126:
			got = uint64(binary.BigEndian.Uint16(h[2:]))
		case 127:
			got = binary.BigEndian.Uint64(h[2:])
		default:
			got = uint64(l)
		}
		if got != uint64(n) {
			t.Errorf("header %x announces %d bytes, want %d", h, got, n)
		}
	}
}

// FuzzReadClientMessage feeds arbitrary client bytes to the cloud's frame
// reader: it must never panic, never return more than the limit, and only
// ever answer with pongs and a close.
func FuzzReadClientMessage(f *testing.F) {
	f.Add(clientFrame(true, opText, []byte(`{"header":{"msg_id":"1"},"route":{"operation":"keepalive"},"content":"ping"}`)))
	f.Add(append(clientFrame(false, opText, []byte("a")), clientFrame(true, opContinuation, []byte("b"))...))
	f.Add(append(clientFrame(true, opPing, []byte("p")), clientFrame(true, opClose, websocket.FormatCloseMessage(1000, "x"))...))
	f.Add(clientFrame(true, opBinary, make([]byte, 200)))
	f.Add([]byte{0x81, 0x02, 'h', 'i'})
	f.Add(binary.BigEndian.AppendUint64([]byte{0x82, 0xff}, 1<<40))
	const limit = 1024
	f.Fuzz(func(t *testing.T, stream []byte) {
		r := bytes.NewReader(stream)
		rec := &controlRecorder{}
		for range 64 {
			m, err := readClientMessage(r, r.Read, limit, rec)
			if err != nil {
				if errors.Is(err, ErrWebSocketProtocol) && !strings.Contains(err.Error(), ": ") {
					t.Fatalf("protocol error %q does not say what was wrong", err)
				}
				break
			}
			if len(m) > limit {
				t.Fatalf("message of %d bytes passed the limit of %d", len(m), limit)
			}
		}
		for _, c := range rec.sent {
			if c.opcode != opPong && c.opcode != opClose {
				t.Fatalf("answered with opcode %#x", c.opcode)
			}
		}
	})
}
