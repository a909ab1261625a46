package tunnel

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// MaxConnectBytes bounds the CONNECT request line and headers.
const MaxConnectBytes = 16 << 10

// ErrBadConnect is wrapped by every error about a CONNECT request.
var ErrBadConnect = errors.New("tunnel: bad CONNECT request")

// Target is where a CONNECT request asks to go. Host is an IP address in
// canonical form (IPv4-mapped IPv6 unmapped) or a lower-case DNS name.
type Target struct {
	Host string
	Port int
}

// String is host:port, with brackets around IPv6 addresses.
func (t Target) String() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

// ReadConnect reads one HTTP/1.x CONNECT request (RFC 9110 §9.3.6, the form
// the kube-apiserver's egress selector and Go's HTTPS_PROXY support send)
// from r. It returns the target and any bytes the client sent after the
// request, which belong to the tunnel.
func ReadConnect(r io.Reader) (Target, []byte, error) {
	lr := &io.LimitedReader{R: r, N: MaxConnectBytes}
	br := bufio.NewReaderSize(lr, 4096)
	req, err := http.ReadRequest(br)
	if err != nil {
		if lr.N == 0 {
			return Target{}, nil, fmt.Errorf("%w: request longer than %d bytes", ErrBadConnect, MaxConnectBytes)
		}
		return Target{}, nil, fmt.Errorf("%w: %w", ErrBadConnect, err)
	}
	if req.Method != http.MethodConnect {
		return Target{}, nil, fmt.Errorf("%w: method %q, only CONNECT is served here", ErrBadConnect, printable(req.Method))
	}
	if req.ContentLength > 0 || len(req.TransferEncoding) > 0 {
		return Target{}, nil, fmt.Errorf("%w: a CONNECT request has no body", ErrBadConnect)
	}
	// The request target, not the Host header: the apiserver sends
	// "Host: 127.0.0.1" whatever it dials.
	if req.URL == nil || req.URL.Host == "" || req.URL.Path != "" || req.URL.User != nil || req.URL.RawQuery != "" {
		return Target{}, nil, fmt.Errorf("%w: request target %q is not host:port", ErrBadConnect, printable(req.RequestURI))
	}
	t, err := ParseTarget(req.URL.Host)
	if err != nil {
		return Target{}, nil, err
	}
	var rest []byte
	if n := br.Buffered(); n > 0 {
		rest, _ = br.Peek(n)
		rest = append([]byte(nil), rest...)
	}
	return t, rest, nil
}

// ParseTarget parses host:port into a Target with a canonical host.
func ParseTarget(hostport string) (Target, error) {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return Target{}, fmt.Errorf("%w: target %q: %v", ErrBadConnect, printable(hostport), err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 || portStr[0] == '0' || portStr[0] == '+' {
		return Target{}, fmt.Errorf("%w: target %q: port %q is not a number in 1-65535", ErrBadConnect, printable(hostport), printable(portStr))
	}
	h, err := CanonicalHost(host)
	if err != nil {
		return Target{}, fmt.Errorf("%w: target %q: %v", ErrBadConnect, printable(hostport), err)
	}
	return Target{Host: h, Port: port}, nil
}

// CanonicalHost returns host as an IP address in canonical form or as a
// lower-case DNS name without a trailing dot; anything else is an error.
// Node addresses go through it too, so that they compare equal.
func CanonicalHost(host string) (string, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return "", errors.New("IPv6 zones are not supported")
		}
		return a.Unmap().String(), nil
	}
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if h == "" || len(h) > 253 {
		return "", fmt.Errorf("host %q is not an IP address or DNS name", printable(host))
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("host %q is not an IP address or DNS name", printable(host))
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("host %q is not an IP address or DNS name", printable(host))
			}
		}
	}
	return h, nil
}

// WriteConnectOK tells a CONNECT client that the tunnel is up.
func WriteConnectOK(w io.Writer) error {
	if _, err := io.WriteString(w, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return fmt.Errorf("tunnel: write CONNECT response: %w", err)
	}
	return nil
}

// WriteConnectError refuses a CONNECT request. The reason goes into the
// status line as well as the body, because the kube-apiserver and Go's
// HTTP client report only the status line to their users.
func WriteConnectError(w io.Writer, code int, reason string) error {
	reason = printable(reason)
	if len(reason) > 512 {
		reason = reason[:512]
	}
	body := reason + "\n"
	resp := fmt.Sprintf("HTTP/1.1 %03d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		code, reason, len(body), body)
	if _, err := io.WriteString(w, resp); err != nil {
		return fmt.Errorf("tunnel: write CONNECT response: %w", err)
	}
	return nil
}
