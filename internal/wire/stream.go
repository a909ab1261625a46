package wire

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Stream requests: CloudStream asks an edge, over its CloudHub session, to
// dial back a fresh TLS connection to the tunnel port and present the id, so
// that the cloud can splice it with the connection waiting for that node.
// The message is "query null/stream/{id}" with a StreamRequest as content and
// needs no acknowledgement: the tunnel connection (or its absence) is the
// answer.
const (
	SourceCloudStream = "cloudstream"
	GroupStream       = "stream"
	// StreamServiceKubelet is the edge's kubelet API server (logs, exec,
	// attach, port-forward, stats); the only service a stream reaches.
	StreamServiceKubelet = "kubelet"
	// streamIDLen is the length of a stream id: 16 random bytes in hex.
	streamIDLen = 32
)

// ErrBadStreamRequest is wrapped by every StreamRequest validation error.
var ErrBadStreamRequest = errors.New("wire: bad stream request")

// StreamRequest is the content of a stream message.
type StreamRequest struct {
	// ID names the stream; the edge presents it on the tunnel connection.
	ID string `json:"id"`
	// Service is what the connection is for (StreamServiceKubelet).
	Service string `json:"service"`
}

// Validate checks every field; the error names the bad one.
func (r StreamRequest) Validate() error {
	if err := ValidateStreamID(r.ID); err != nil {
		return err
	}
	if r.Service != StreamServiceKubelet {
		return fmt.Errorf("%w: service %q is unknown (want %q)", ErrBadStreamRequest, r.Service, StreamServiceKubelet)
	}
	return nil
}

// NewStreamID returns a fresh stream id: 128 random bits in lower-case hex,
// so that ids cannot be guessed.
func NewStreamID() string {
	var b [streamIDLen / 2]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux since Go 1.24
	return hex.EncodeToString(b[:])
}

// ValidateStreamID checks that id has the form NewStreamID returns.
func ValidateStreamID(id string) error {
	if len(id) != streamIDLen {
		return fmt.Errorf("%w: id %q is %d characters, want %d", ErrBadStreamRequest, truncate(id, 40), len(id), streamIDLen)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("%w: id has %q at %d: only lower-case hex digits are allowed", ErrBadStreamRequest, c, i)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// NewStreamRequest builds the message that asks an edge to open stream r.
func NewStreamRequest(now time.Time, r StreamRequest) (Message, error) {
	if err := r.Validate(); err != nil {
		return Message{}, err
	}
	return New(now, SourceCloudStream, GroupStream, OpQuery, Resource{Type: TypeStream, Name: r.ID}, r)
}

// ParseStreamRequest decodes and validates the StreamRequest a message
// carries; the id in the content must be the resource name.
func ParseStreamRequest(m Message) (StreamRequest, error) {
	if m.Resource.Type != TypeStream {
		return StreamRequest{}, fmt.Errorf("%w: resource type is %q, not %q", ErrBadStreamRequest, m.Resource.Type, TypeStream)
	}
	if m.Operation != OpQuery {
		return StreamRequest{}, fmt.Errorf("%w: operation is %q, not %q", ErrBadStreamRequest, m.Operation, OpQuery)
	}
	var r StreamRequest
	dec := json.NewDecoder(bytes.NewReader(m.Content))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return StreamRequest{}, fmt.Errorf("%w: content: %v", ErrBadStreamRequest, err)
	}
	if dec.More() {
		return StreamRequest{}, fmt.Errorf("%w: trailing data after the content", ErrBadStreamRequest)
	}
	if err := r.Validate(); err != nil {
		return StreamRequest{}, err
	}
	if r.ID != m.Resource.Name {
		return StreamRequest{}, fmt.Errorf("%w: content id %q differs from resource name %q", ErrBadStreamRequest, r.ID, m.Resource.Name)
	}
	return r, nil
}
