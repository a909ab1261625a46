package wire

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Stream transports (QUIC) carry frames as a 4-byte big-endian length
// followed by that many bytes of message; WebSocket uses its own text frames.

// WriteFrame writes one length-prefixed frame.
func WriteFrame(w io.Writer, frame []byte) error {
	buf := make([]byte, 4+len(frame))
	binary.BigEndian.PutUint32(buf, uint32(len(frame)))
	copy(buf[4:], frame)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("wire: write frame: %w", err)
	}
	return nil
}

// ReadFrame reads one length-prefixed frame of at most maxBytes; a larger
// length is refused before anything is allocated.
func ReadFrame(r io.Reader, maxBytes int) ([]byte, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxFrameBytes
	}
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(maxBytes) {
		return nil, fmt.Errorf("%w: %d bytes announced, limit %d", ErrFrameTooLarge, n, maxBytes)
	}
	frame := make([]byte, n)
	if _, err := io.ReadFull(r, frame); err != nil {
		return nil, fmt.Errorf("wire: read frame body: %w", err)
	}
	return frame, nil
}
