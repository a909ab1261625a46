package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// ErrWebSocketProtocol marks a frame that breaks RFC 6455; the session is
// closed with code 1002.
var ErrWebSocketProtocol = errors.New("websocket protocol error")

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// A frame header from a client is at most 14 bytes: 2, 8 of extended length, 4 of mask.
const maxClientFrameHeader = 14

// Payloads up to this size are allocated at once; larger ones grow as their
// bytes arrive, so a header that announces megabytes costs nothing until the
// peer really sends them.
const eagerPayloadBytes = 64 << 10

type wsFrameHeader struct {
	fin    bool
	opcode byte
	length uint64
	mask   [4]byte
}

func (h wsFrameHeader) control() bool { return h.opcode&0x8 != 0 }

func protocolError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrWebSocketProtocol, fmt.Sprintf(format, args...))
}

// readClientFrameHeader decodes one frame header sent by a client: masked,
// no extension bits (none are negotiated), a known opcode, and control frames
// unfragmented and at most 125 bytes. scratch holds have bytes read already.
func readClientFrameHeader(r io.Reader, scratch *[maxClientFrameHeader]byte, have int) (wsFrameHeader, error) {
	if _, err := io.ReadFull(r, scratch[have:2]); err != nil {
		if have > 0 {
			err = fmt.Errorf("websocket frame header: %w", noEOF(err))
		}
		return wsFrameHeader{}, err
	}
	b0, b1 := scratch[0], scratch[1]
	h := wsFrameHeader{fin: b0&0x80 != 0, opcode: b0 & 0x0f}
	if rsv := b0 & 0x70; rsv != 0 {
		return h, protocolError("reserved bits %#x set, but no extension was negotiated", rsv)
	}
	switch h.opcode {
	case opContinuation, opText, opBinary, opClose, opPing, opPong:
	default:
		return h, protocolError("unknown opcode %#x", h.opcode)
	}
	if b1&0x80 == 0 {
		return h, protocolError("client frame is not masked")
	}
	need := 4 // the mask
	switch n := b1 & 0x7f; n {
	case 126:
		need += 2
	case 127:
		need += 8
	default:
		h.length = uint64(n)
	}
	ext := scratch[2 : 2+need]
	if _, err := io.ReadFull(r, ext); err != nil {
		return h, fmt.Errorf("websocket frame header: %w", noEOF(err))
	}
	switch need {
	case 6:
		h.length = uint64(binary.BigEndian.Uint16(ext))
	case 12:
		h.length = binary.BigEndian.Uint64(ext)
		if h.length>>63 != 0 {
			return h, protocolError("payload length has its most significant bit set")
		}
	}
	copy(h.mask[:], ext[need-4:])
	if h.control() {
		if !h.fin {
			return h, protocolError("control frame %#x is fragmented", h.opcode)
		}
		if h.length > 125 {
			return h, protocolError("control frame %#x carries %d bytes, more than 125", h.opcode, h.length)
		}
	}
	return h, nil
}

// readMaskedPayload appends the frame's unmasked payload to dst.
func readMaskedPayload(r io.Reader, h wsFrameHeader, dst []byte) ([]byte, error) {
	start := len(dst)
	for remaining := h.length; remaining > 0; {
		chunk := int(min(remaining, eagerPayloadBytes))
		n := len(dst)
		dst = slices.Grow(dst, chunk)[:n+chunk]
		if _, err := io.ReadFull(r, dst[n:]); err != nil {
			return dst[:n], fmt.Errorf("websocket frame payload: %w", noEOF(err))
		}
		remaining -= uint64(chunk)
	}
	payload := dst[start:]
	for i := range payload {
		payload[i] ^= h.mask[i&3]
	}
	return dst, nil
}

// controlReplier answers a client's control frames.
type controlReplier interface {
	writeControl(opcode byte, payload []byte) error
}

// readClientMessage reads frames until a text or binary message is complete
// and returns it, answering pings and a close on the way. firstRead fills
// the start of each frame header (at least one byte): the cloud waits for a
// frame there, see serverWebSocket.
func readClientMessage(r io.Reader, firstRead func([]byte) (int, error), maxMessage int, reply controlReplier) ([]byte, error) {
	if maxMessage <= 0 {
		maxMessage = wire.DefaultMaxFrameBytes
	}
	var (
		scratch   [maxClientFrameHeader]byte
		msg       []byte
		inMessage bool
	)
	for {
		have, err := firstRead(scratch[:2])
		if err != nil {
			return nil, err
		}
		h, err := readClientFrameHeader(r, &scratch, have)
		if err != nil {
			return nil, err
		}
		if h.control() {
			payload, err := readMaskedPayload(r, h, nil)
			if err != nil {
				return nil, err
			}
			switch h.opcode {
			case opPing:
				if err := reply.writeControl(opPong, payload); err != nil {
					return nil, fmt.Errorf("websocket: answer ping: %w", err)
				}
			case opClose:
				return nil, peerClosed(payload, reply)
			}
			continue
		}
		switch {
		case h.opcode == opContinuation && !inMessage:
			return nil, protocolError("continuation frame without a message to continue")
		case h.opcode != opContinuation && inMessage:
			return nil, protocolError("new message (opcode %#x) before the previous one ended", h.opcode)
		}
		if size := uint64(len(msg)) + h.length; size > uint64(maxMessage) {
			return nil, fmt.Errorf("%w: websocket message of at least %d bytes, limit %d", wire.ErrFrameTooLarge, size, maxMessage)
		}
		inMessage = true
		if msg, err = readMaskedPayload(r, h, msg); err != nil {
			return nil, err
		}
		if h.fin {
			if msg == nil {
				msg = []byte{}
			}
			return msg, nil
		}
	}
}

// peerClosed answers a close frame with the same code and reports it as
// gorilla/websocket does, so callers see one error type from both ends.
func peerClosed(payload []byte, reply controlReplier) error {
	ce := &websocket.CloseError{Code: websocket.CloseNoStatusReceived}
	answer := []byte{}
	switch {
	case len(payload) == 1:
		return protocolError("close frame with a 1-byte payload")
	case len(payload) >= 2:
		ce.Code = int(binary.BigEndian.Uint16(payload))
		ce.Text = string(payload[2:])
		if !validCloseCode(ce.Code) {
			return protocolError("close code %d is not one a peer may send", ce.Code)
		}
		if !utf8.Valid(payload[2:]) {
			return protocolError("close reason is not UTF-8")
		}
		answer = websocket.FormatCloseMessage(ce.Code, "")
	}
	_ = reply.writeControl(opClose, answer) // the peer may already be gone
	return ce
}

// validCloseCode reports whether a peer may put code on the wire (RFC 6455 §7.4).
func validCloseCode(code int) bool {
	switch {
	case code >= 3000 && code <= 4999:
		return true
	case code >= 1000 && code <= 1014:
		return code != 1004 && code != 1005 && code != 1006
	}
	return false
}

// appendServerFrameHeader appends the header of an unmasked, final frame.
func appendServerFrameHeader(dst []byte, opcode byte, length int) []byte {
	dst = append(dst, 0x80|opcode)
	switch {
	case length <= 125:
		return append(dst, byte(length))
	case length <= 0xffff:
		return binary.BigEndian.AppendUint16(append(dst, 126), uint16(length))
	default:
		return binary.BigEndian.AppendUint64(append(dst, 127), uint64(length))
	}
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
