package tunnel

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// HelloPrefix starts the first line an edge writes on a tunnel connection
// for a stream: "KUBEEDGE-STREAM/1 <stream id>\n".
const HelloPrefix = "KUBEEDGE-STREAM/1 "

// CertHelloPrefix starts the first line of a request for the edge's kubelet
// serving certificate: "KUBEEDGE-CERT/1 <n>\n" and n bytes of CSR (DER).
// The cloud answers "OK <n>\n" and n bytes of certificate (DER), or
// "ERR <reason>\n".
const CertHelloPrefix = "KUBEEDGE-CERT/1 "

// Bounds of the certificate exchange.
const (
	MaxCSRBytes  = 4 << 10
	MaxCertBytes = 8 << 10
)

// Hello is what an edge asks for on a tunnel connection: the stream with
// StreamID, or (CSR set) a serving certificate.
type Hello struct {
	StreamID string
	CSR      []byte
}

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

// WriteCertRequest asks for a kubelet serving certificate for the CSR.
func WriteCertRequest(w io.Writer, csrDER []byte) error {
	if len(csrDER) == 0 || len(csrDER) > MaxCSRBytes {
		return fmt.Errorf("tunnel: certificate request of %d bytes (1-%d)", len(csrDER), MaxCSRBytes)
	}
	if _, err := io.WriteString(w, CertHelloPrefix+strconv.Itoa(len(csrDER))+"\n"); err != nil {
		return fmt.Errorf("tunnel: write certificate request: %w", err)
	}
	if _, err := w.Write(csrDER); err != nil {
		return fmt.Errorf("tunnel: write certificate request: %w", err)
	}
	return nil
}

// ReadHello reads a hello: a stream id, or a certificate request with its
// CSR. It reads byte by byte up to the newline, then exactly the CSR, so
// that nothing after the hello is consumed.
func ReadHello(r io.Reader) (Hello, error) {
	line, err := readLine(r)
	if err != nil {
		return Hello{}, fmt.Errorf("%w: %w", ErrBadHello, err)
	}
	if n, ok := strings.CutPrefix(line, CertHelloPrefix); ok {
		csr, err := readSized(r, n, MaxCSRBytes)
		if err != nil {
			return Hello{}, fmt.Errorf("%w: certificate request: %w", ErrBadHello, err)
		}
		return Hello{CSR: csr}, nil
	}
	id, ok := strings.CutPrefix(line, HelloPrefix)
	if !ok {
		return Hello{}, fmt.Errorf("%w: line %q does not start with %q or %q", ErrBadHello, printable(line), HelloPrefix, CertHelloPrefix)
	}
	if err := wire.ValidateStreamID(id); err != nil {
		return Hello{}, fmt.Errorf("%w: %w", ErrBadHello, err)
	}
	return Hello{StreamID: id}, nil
}

// WriteCertReply answers a certificate request with certDER, or refuses it.
func WriteCertReply(w io.Writer, certDER []byte, refusal error) error {
	if refusal != nil {
		return WriteReply(w, refusal)
	}
	if len(certDER) == 0 || len(certDER) > MaxCertBytes {
		return fmt.Errorf("tunnel: certificate of %d bytes (1-%d)", len(certDER), MaxCertBytes)
	}
	if _, err := io.WriteString(w, "OK "+strconv.Itoa(len(certDER))+"\n"); err != nil {
		return fmt.Errorf("tunnel: write certificate reply: %w", err)
	}
	if _, err := w.Write(certDER); err != nil {
		return fmt.Errorf("tunnel: write certificate reply: %w", err)
	}
	return nil
}

// ReadCertReply reads the answer to a certificate request.
func ReadCertReply(r io.Reader) ([]byte, error) {
	line, err := readLine(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadReply, err)
	}
	if reason, ok := strings.CutPrefix(line, "ERR "); ok {
		return nil, fmt.Errorf("%w: %s", ErrRefused, reason)
	}
	n, ok := strings.CutPrefix(line, "OK ")
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrBadReply, printable(line))
	}
	der, err := readSized(r, n, MaxCertBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %w", ErrBadReply, err)
	}
	return der, nil
}

// readSized reads the decimal length n (1..limit) bytes announced.
func readSized(r io.Reader, n string, limit int) ([]byte, error) {
	size, err := strconv.Atoi(n)
	if err != nil || size <= 0 || size > limit || strconv.Itoa(size) != n {
		return nil, fmt.Errorf("length %q is not a number in 1-%d", printable(n), limit)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
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
