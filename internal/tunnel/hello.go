package tunnel

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// HelloPrefix starts the first line an edge writes on a tunnel connection:
// "KUBEEDGE-STREAM/1 <stream id>\n".
const HelloPrefix = "KUBEEDGE-STREAM/1 "

// maxLine bounds a hello or reply line, newline included.
const maxLine = 256

// Errors, wrapped with detail.
var (
	// ErrBadHello: the first line of a tunnel connection is not a hello.
	ErrBadHello = errors.New("tunnel: bad hello")
	// ErrRefused: the cloud refused the stream; the message says why.
	ErrRefused = errors.New("tunnel: stream refused")
	// ErrBadReply: the cloud's reply is not one.
	ErrBadReply = errors.New("tunnel: bad reply")
)

// WriteHello writes the hello for stream id.
func WriteHello(w io.Writer, id string) error {
	if err := wire.ValidateStreamID(id); err != nil {
		return err
	}
	if _, err := io.WriteString(w, HelloPrefix+id+"\n"); err != nil {
		return fmt.Errorf("tunnel: write hello: %w", err)
	}
	return nil
}

// ReadHello reads a hello line and returns its stream id. It reads byte by
// byte so that nothing after the line is consumed.
func ReadHello(r io.Reader) (string, error) {
	line, err := readLine(r)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadHello, err)
	}
	id, ok := strings.CutPrefix(line, HelloPrefix)
	if !ok {
		return "", fmt.Errorf("%w: line %q does not start with %q", ErrBadHello, printable(line), HelloPrefix)
	}
	if err := wire.ValidateStreamID(id); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadHello, err)
	}
	return id, nil
}

// WriteReply answers a hello: "OK\n" when refusal is nil, else
// "ERR <reason>\n" with the reason reduced to one printable line.
func WriteReply(w io.Writer, refusal error) error {
	line := "OK\n"
	if refusal != nil {
		reason := printable(refusal.Error())
		if len(reason) > maxLine-6 {
			reason = reason[:maxLine-6]
		}
		line = "ERR " + reason + "\n"
	}
	if _, err := io.WriteString(w, line); err != nil {
		return fmt.Errorf("tunnel: write reply: %w", err)
	}
	return nil
}

// ReadReply reads the cloud's reply; a refusal is an error wrapping
// ErrRefused with the cloud's reason.
func ReadReply(r io.Reader) error {
	line, err := readLine(r)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadReply, err)
	}
	if line == "OK" {
		return nil
	}
	if reason, ok := strings.CutPrefix(line, "ERR "); ok {
		return fmt.Errorf("%w: %s", ErrRefused, reason)
	}
	return fmt.Errorf("%w: %q", ErrBadReply, printable(line))
}

// readLine reads up to and including '\n' (at most maxLine bytes) and
// returns the line without it.
func readLine(r io.Reader) (string, error) {
	var buf [maxLine]byte
	for n := 0; n < len(buf); n++ {
		if _, err := io.ReadFull(r, buf[n:n+1]); err != nil {
			if errors.Is(err, io.EOF) && n > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		if buf[n] == '\n' {
			return string(buf[:n]), nil
		}
	}
	return "", fmt.Errorf("no newline within %d bytes", maxLine)
}

// printable replaces every byte outside printable ASCII with '?', so that
// peer-supplied text is safe in logs, replies and HTTP reason phrases.
func printable(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}
