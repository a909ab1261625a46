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

// Operation is what a message asks the receiver to do.
type Operation string

// Operations KubeEdge puts on the wire.
const (
	OpInsert    Operation = "insert"
	OpUpdate    Operation = "update"
	OpPatch     Operation = "patch"
	OpDelete    Operation = "delete"
	OpQuery     Operation = "query"
	OpResponse  Operation = "response"
	OpUpload    Operation = "upload"
	OpKeepalive Operation = "keepalive"
	OpError     Operation = "error"
)

// Known reports whether op is one of the operations above.
func (op Operation) Known() bool {
	switch op {
	case OpInsert, OpUpdate, OpPatch, OpDelete, OpQuery, OpResponse, OpUpload, OpKeepalive, OpError:
		return true
	}
	return false
}

// Sources and groups used in routes. KubeEdge routes by module name; the values
// only matter for interoperability and logs.
const (
	SourceCloudHub       = "cloudhub"
	SourceEdgeController = "edgecontroller"
	SourceEdgeHub        = "edgehub"
	SourceMetaManager    = "metaManager"
	SourceEdged          = "edged"
	GroupResource        = "resource"
	GroupHub             = "hub"
	GroupMeta            = "meta"
)

// ContentOK is the content of a positive acknowledgement.
const ContentOK = "OK"

// DefaultMaxFrameBytes bounds a single message on the wire. etcd limits an
// object to 1.5 MiB, so 4 MiB leaves room for the envelope and escaping.
const DefaultMaxFrameBytes = 4 << 20

// Errors returned by Decode, wrapped with detail.
var (
	ErrFrameTooLarge    = errors.New("wire: frame too large")
	ErrMalformed        = errors.New("wire: malformed message")
	ErrUnknownOperation = errors.New("wire: unknown operation")
)

// Header is the message header, with KubeEdge's JSON names.
type Header struct {
	ID              string `json:"msg_id"`
	ParentID        string `json:"parent_msg_id,omitempty"`
	Timestamp       int64  `json:"timestamp"` // milliseconds since the epoch
	ResourceVersion string `json:"resourceversion,omitempty"`
	Sync            bool   `json:"sync,omitempty"`
	Type            string `json:"type,omitempty"`
}

// Message is a decoded envelope. Resource is the parsed route.resource; the
// raw content stays JSON until the component that owns the type decodes it.
type Message struct {
	Header      Header
	Source      string
	Destination string
	Group       string
	Operation   Operation
	Resource    Resource
	Content     json.RawMessage
}

// jsonRoute and jsonMessage are the on-wire shapes.
type jsonRoute struct {
	Source      string    `json:"source"`
	Destination string    `json:"destination,omitempty"`
	Group       string    `json:"group"`
	Operation   Operation `json:"operation"`
	Resource    string    `json:"resource"`
}

type jsonMessage struct {
	Header  Header          `json:"header"`
	Route   jsonRoute       `json:"route"`
	Content json.RawMessage `json:"content"`
}

// NewID returns a random message id in UUID v4 form, as KubeEdge uses.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux since Go 1.24
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// New builds a message with a fresh id and timestamp.
func New(now time.Time, source, group string, op Operation, res Resource, content any) (Message, error) {
	raw, err := marshalContent(content)
	if err != nil {
		return Message{}, err
	}
	return Message{
		Header:    Header{ID: NewID(), Timestamp: now.UnixMilli()},
		Source:    source,
		Group:     group,
		Operation: op,
		Resource:  res,
		Content:   raw,
	}, nil
}

// NewAck builds the positive acknowledgement of parent.
func NewAck(now time.Time, source string, parent Message) Message {
	return Message{
		Header:    Header{ID: NewID(), ParentID: parent.Header.ID, Timestamp: now.UnixMilli()},
		Source:    source,
		Group:     parent.Group,
		Operation: OpResponse,
		Resource:  parent.Resource,
		Content:   json.RawMessage(`"OK"`),
	}
}

// NewError builds an error reply to parent (which may be only partly decoded);
// text says what was wrong.
func NewError(now time.Time, source string, parentID string, text string) Message {
	raw, _ := json.Marshal(text) // a string always marshals
	return Message{
		Header:    Header{ID: NewID(), ParentID: parentID, Timestamp: now.UnixMilli()},
		Source:    source,
		Group:     GroupHub,
		Operation: OpError,
		Content:   raw,
	}
}

func marshalContent(content any) (json.RawMessage, error) {
	switch c := content.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		return c, nil
	case []byte:
		return json.RawMessage(c), nil
	}
	raw, err := json.Marshal(content)
	if err != nil {
		return nil, fmt.Errorf("wire: marshal content: %w", err)
	}
	return raw, nil
}

// ContentString returns the content when it is a JSON string ("ping", "OK", error texts).
func (m Message) ContentString() (string, bool) {
	var s string
	if len(m.Content) == 0 || m.Content[0] != '"' || json.Unmarshal(m.Content, &s) != nil {
		return "", false
	}
	return s, true
}

// Encode marshals m into one frame.
func Encode(m Message) ([]byte, error) {
	jm := jsonMessage{
		Header: m.Header,
		Route: jsonRoute{
			Source: m.Source, Destination: m.Destination, Group: m.Group,
			Operation: m.Operation,
		},
		Content: m.Content,
	}
	if !m.Resource.IsZero() {
		jm.Route.Resource = m.Resource.String()
	}
	if len(jm.Content) == 0 {
		jm.Content = json.RawMessage("null")
	}
	b, err := json.Marshal(jm)
	if err != nil {
		return nil, fmt.Errorf("wire: encode %s %s: %w", m.Operation, m.Resource, err)
	}
	return b, nil
}

// Decode parses and validates one frame of at most maxBytes (0 means
// DefaultMaxFrameBytes). On error, the returned Message carries whatever header
// could be read so that the caller can address an error reply.
func Decode(frame []byte, maxBytes int) (Message, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxFrameBytes
	}
	if len(frame) > maxBytes {
		return Message{}, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, len(frame), maxBytes)
	}
	var jm jsonMessage
	dec := json.NewDecoder(bytes.NewReader(frame))
	if err := dec.Decode(&jm); err != nil {
		return Message{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return Message{}, fmt.Errorf("%w: trailing data after the message", ErrMalformed)
	}
	m := Message{
		Header: jm.Header, Source: jm.Route.Source, Destination: jm.Route.Destination,
		Group: jm.Route.Group, Operation: jm.Route.Operation, Content: jm.Content,
	}
	if string(m.Content) == "null" {
		m.Content = nil
	}
	if m.Header.ID == "" {
		return m, fmt.Errorf("%w: header.msg_id is empty", ErrMalformed)
	}
	if len(m.Header.ID) > 128 {
		return m, fmt.Errorf("%w: header.msg_id is %d bytes, limit 128", ErrMalformed, len(m.Header.ID))
	}
	if !m.Operation.Known() {
		return m, fmt.Errorf("%w: %q", ErrUnknownOperation, m.Operation)
	}
	if m.Operation == OpResponse && m.Header.ParentID == "" {
		return m, fmt.Errorf("%w: a response without header.parent_msg_id", ErrMalformed)
	}
	if jm.Route.Resource != "" {
		r, err := ParseResource(jm.Route.Resource)
		if err != nil {
			return m, err
		}
		m.Resource = r
	} else if m.Operation != OpKeepalive && m.Operation != OpResponse && m.Operation != OpError {
		return m, fmt.Errorf("%w: route.resource is empty for operation %q", ErrMalformed, m.Operation)
	}
	return m, nil
}
