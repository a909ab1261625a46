package kubeletserver

import (
	"bytes"
	"errors"
	"fmt"
	"time"
)

// CRI log format (what containerd writes to a container's LogPath), one
// record per line:
//
//	2026-01-02T03:04:05.123456789Z stdout F the message
//
// the timestamp (RFC 3339 with nanoseconds), the stream (stdout|stderr), the
// tags (F: full line, P: partial line to be continued by the next record;
// further ":"-separated tags are reserved) and the content.

// Stream names in the CRI log format.
const (
	streamStdout = "stdout"
	streamStderr = "stderr"
)

// timeFormatIn parses any RFC 3339 timestamp; timeFormatOut writes the fixed
// width form the kubelet writes with ?timestamps=true.
const (
	timeFormatIn  = time.RFC3339Nano
	timeFormatOut = "2006-01-02T15:04:05.000000000Z07:00"
)

// ErrBadLogLine is wrapped by every CRI log parse error.
var ErrBadLogLine = errors.New("kubeletserver: bad CRI log line")

// logRecord is one parsed record.
type logRecord struct {
	Time   time.Time
	Stream string // streamStdout or streamStderr
	// Partial means the content continues in the next record.
	Partial bool
	// Content is the message; a full record's content ends with the '\n'
	// of the line (the last line of a file may lack it), a partial one's
	// never does.
	Content []byte
}

// parseCRILogLine parses one line, with its trailing '\n' if present.
// Content aliases line.
func parseCRILogLine(line []byte) (logRecord, error) {
	var r logRecord
	ts, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return r, fmt.Errorf("%w: no space after the timestamp", ErrBadLogLine)
	}
	t, err := time.Parse(timeFormatIn, string(ts))
	if err != nil {
		return r, fmt.Errorf("%w: timestamp %q: %v", ErrBadLogLine, truncateBytes(ts, 40), err)
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		return r, fmt.Errorf("%w: no space after the stream", ErrBadLogLine)
	}
	switch string(stream) {
	case streamStdout, streamStderr:
	default:
		return r, fmt.Errorf("%w: stream %q is neither stdout nor stderr", ErrBadLogLine, truncateBytes(stream, 40))
	}
	tags, content, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		return r, fmt.Errorf("%w: no space after the tags", ErrBadLogLine)
	}
	first, _, _ := bytes.Cut(tags, []byte{':'})
	switch string(first) {
	case "F":
	case "P":
		r.Partial = true
		content = bytes.TrimSuffix(content, []byte{'\n'})
	default:
		return r, fmt.Errorf("%w: tag %q is neither F nor P", ErrBadLogLine, truncateBytes(first, 40))
	}
	r.Time, r.Stream, r.Content = t, string(stream), content
	return r, nil
}

func truncateBytes(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
