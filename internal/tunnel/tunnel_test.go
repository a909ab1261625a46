package tunnel

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kubeedge-go/kubeedge/internal/wire"
)

func TestHelloRoundTrip(t *testing.T) {
	id := wire.NewStreamID()
	var buf bytes.Buffer
	if err := WriteHello(&buf, id); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("after")
	got, err := ReadHello(&buf)
	if err != nil || got.StreamID != id || got.CSR != nil {
		t.Fatalf("ReadHello = %+v, %v; want %q", got, err, id)
	}
	if buf.String() != "after" {
		t.Fatalf("ReadHello consumed past the line: %q left", buf.String())
	}
	if err := WriteHello(&buf, "nope"); !errors.Is(err, wire.ErrBadStreamRequest) {
		t.Fatalf("WriteHello(bad id) = %v", err)
	}
}

func TestReadHelloRejects(t *testing.T) {
	id := wire.NewStreamID()
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "EOF"},
		{"no newline", HelloPrefix + id, "unexpected EOF"},
		{"http", "GET / HTTP/1.1\r\n", `does not start with "KUBEEDGE-STREAM/1 " or "KUBEEDGE-CERT/1 "`},
		{"cert too big", CertHelloPrefix + "5000\n", `length "5000" is not a number in 1-4096`},
		{"cert bad length", CertHelloPrefix + "007\n", `length "007"`},
		{"cert short", CertHelloPrefix + "10\nabc", "unexpected EOF"},
		{"bad id", HelloPrefix + "../../etc\n", "characters, want 32"},
		{"long", strings.Repeat("x", 1000), "no newline within 256 bytes"},
		{"binary", "\x16\x03\x01\x02\x00\n", `line "?????"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadHello(strings.NewReader(tc.in))
			if !errors.Is(err, ErrBadHello) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ReadHello(%q) = %v, want ErrBadHello containing %q", tc.in, err, tc.want)
			}
		})
	}
}

func TestCertExchange(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteCertRequest(&buf, []byte("csr-der")); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("after")
	h, err := ReadHello(&buf)
	if err != nil || string(h.CSR) != "csr-der" || h.StreamID != "" || buf.String() != "after" {
		t.Fatalf("ReadHello = %+v, %v, left %q", h, err, buf.String())
	}
	buf.Reset()
	if err := WriteCertReply(&buf, []byte("cert-der"), nil); err != nil {
		t.Fatal(err)
	}
	if der, err := ReadCertReply(&buf); err != nil || string(der) != "cert-der" {
		t.Fatalf("ReadCertReply = %q, %v", der, err)
	}
	if err := WriteCertReply(&buf, nil, errors.New("node has no addresses")); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCertReply(&buf); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "node has no addresses") {
		t.Fatalf("refused: %v", err)
	}
	if _, err := ReadCertReply(strings.NewReader("OK 99999\n")); !errors.Is(err, ErrBadReply) {
		t.Fatalf("huge certificate: %v", err)
	}
	if err := WriteCertRequest(&buf, make([]byte, MaxCSRBytes+1)); err == nil {
		t.Fatal("oversize CSR written")
	}
}

func TestReply(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteReply(&buf, nil); err != nil {
		t.Fatal(err)
	}
	if err := ReadReply(&buf); err != nil {
		t.Fatalf("ReadReply(OK) = %v", err)
	}
	if err := WriteReply(&buf, errors.New("stream belongs to\nnode b")); err != nil {
		t.Fatal(err)
	}
	err := ReadReply(&buf)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "stream belongs to?node b") {
		t.Fatalf("ReadReply(ERR) = %v", err)
	}
	if err := ReadReply(strings.NewReader("HTTP/1.1 400 Bad\n")); !errors.Is(err, ErrBadReply) {
		t.Fatalf("ReadReply(garbage) = %v", err)
	}
	if err := WriteReply(&buf, errors.New(strings.Repeat("x", 1000))); err != nil {
		t.Fatal(err)
	}
	if err := ReadReply(&buf); !errors.Is(err, ErrRefused) {
		t.Fatalf("ReadReply(long reason) = %v", err)
	}
}

func TestReadConnect(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Target
		rest     string
		wantErr  string
	}{
		{name: "apiserver", in: "CONNECT 127.0.0.2:10350 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", want: Target{"127.0.0.2", 10350}},
		{name: "hostname", in: "CONNECT Edge-1.:10350 HTTP/1.1\r\nHost: edge-1:10350\r\nUser-Agent: Go-http-client/1.1\r\n\r\n", want: Target{"edge-1", 10350}},
		{name: "ipv6", in: "CONNECT [::ffff:10.0.0.1]:443 HTTP/1.1\r\n\r\n", want: Target{"10.0.0.1", 443}},
		{name: "ipv6 plain", in: "CONNECT [fd00::1]:443 HTTP/1.1\r\n\r\n", want: Target{"fd00::1", 443}},
		{name: "early bytes", in: "CONNECT 10.0.0.1:1 HTTP/1.1\r\n\r\n\x16\x03\x01", want: Target{"10.0.0.1", 1}, rest: "\x16\x03\x01"},
		{name: "get", in: "GET / HTTP/1.1\r\nHost: x\r\n\r\n", wantErr: `method "GET"`},
		{name: "absolute", in: "CONNECT http://x/ HTTP/1.1\r\n\r\n", wantErr: "not host:port"},
		{name: "no port", in: "CONNECT 10.0.0.1 HTTP/1.1\r\n\r\n", wantErr: "missing port"},
		{name: "port 0", in: "CONNECT 10.0.0.1:0 HTTP/1.1\r\n\r\n", wantErr: "1-65535"},
		{name: "port big", in: "CONNECT 10.0.0.1:70000 HTTP/1.1\r\n\r\n", wantErr: "1-65535"},
		{name: "port sign", in: "CONNECT 10.0.0.1:+80 HTTP/1.1\r\n\r\n", wantErr: "invalid port"},
		{name: "zone", in: "CONNECT [fe80::1%25eth0]:80 HTTP/1.1\r\n\r\n", wantErr: "zones"},
		{name: "bad host", in: "CONNECT a..b:80 HTTP/1.1\r\n\r\n", wantErr: "not an IP address or DNS name"},
		{name: "body", in: "CONNECT a:80 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", wantErr: "no body"},
		{name: "garbage", in: "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", wantErr: "malformed HTTP"},
		{name: "huge", in: "CONNECT a:80 HTTP/1.1\r\nX: " + strings.Repeat("y", 20000) + "\r\n\r\n", wantErr: "longer than 16384 bytes"},
		{name: "empty", in: "", wantErr: "EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, rest, err := ReadConnect(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if !errors.Is(err, ErrBadConnect) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ReadConnect error = %v, want ErrBadConnect containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
			if string(rest) != tc.rest {
				t.Fatalf("rest = %q, want %q", rest, tc.rest)
			}
		})
	}
}

// The responses parse with net/http the way the apiserver and Go's proxy
// client read them, and the reason reaches the status line.
func TestConnectResponses(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteConnectOK(&buf); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(&buf)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != 200 || br.Buffered() != 0 {
		t.Fatalf("OK response: %v, %v, %d buffered", res, err, br.Buffered())
	}
	buf.Reset()
	if err := WriteConnectError(&buf, 503, "edge node \"a\" is not connected\r\nX-Evil: 1"); err != nil {
		t.Fatal(err)
	}
	res, err = http.ReadResponse(bufio.NewReader(&buf), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 503 || res.Status != `503 edge node "a" is not connected??X-Evil: 1` || res.Header.Get("X-Evil") != "" {
		t.Fatalf("error response status %q headers %v", res.Status, res.Header)
	}
	if string(body) != "edge node \"a\" is not connected??X-Evil: 1\n" {
		t.Fatalf("body %q", body)
	}
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return c, s
}

func TestSplice(t *testing.T) {
	client, a := tcpPair(t)
	b, server := tcpPair(t)
	done := make(chan [2]int64)
	go func() {
		x, y := Splice(a, b, time.Minute)
		done <- [2]int64{x, y}
	}()
	// server echoes in upper case until EOF, then says bye and closes.
	go func() {
		data, _ := io.ReadAll(server)
		_, _ = server.Write(bytes.ToUpper(data))
		_, _ = server.Write([]byte(" bye"))
		_ = server.Close()
	}()
	if _, err := client.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	_ = client.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "HELLO bye" {
		t.Fatalf("client read %q, %v", got, err)
	}
	n := <-done
	if n != [2]int64{5, 9} {
		t.Fatalf("Splice counted %v, want [5 9]", n)
	}
	client.Close()
}

// A peer that never closes its side is cut off after the grace period.
func TestSpliceGrace(t *testing.T) {
	client, a := tcpPair(t)
	b, server := tcpPair(t)
	defer server.Close()
	done := make(chan struct{})
	go func() {
		Splice(a, b, 10*time.Millisecond)
		close(done)
	}()
	client.Close() // the server side stays open and silent
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Splice did not return after the grace period")
	}
	if _, err := server.Read(make([]byte, 1)); err == nil {
		t.Fatal("the silent side was not closed")
	}
}

func FuzzReadHello(f *testing.F) {
	f.Add([]byte(HelloPrefix + "0123456789abcdef0123456789abcdef\n"))
	f.Add([]byte("OK\n"))
	f.Add([]byte("ERR no\n"))
	f.Add([]byte{0x16, 0x03, 0x01, '\n'})
	f.Add([]byte(CertHelloPrefix + "3\nabcrest"))
	f.Add([]byte("OK 2\nxy"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		h, err := ReadHello(r)
		if err == nil {
			consumed := len(data) - r.Len()
			switch {
			case h.CSR != nil:
				if len(h.CSR) == 0 || len(h.CSR) > MaxCSRBytes || consumed != len(CertHelloPrefix)+len(strconv.Itoa(len(h.CSR)))+1+len(h.CSR) {
					t.Fatalf("certificate request of %d bytes, consumed %d", len(h.CSR), consumed)
				}
			case wire.ValidateStreamID(h.StreamID) != nil:
				t.Fatalf("accepted bad id %q", h.StreamID)
			case consumed != len(HelloPrefix)+len(h.StreamID)+1:
				t.Fatalf("consumed %d bytes for a %d-byte line", consumed, len(HelloPrefix)+len(h.StreamID)+1)
			}
		}
		_ = ReadReply(bytes.NewReader(data))
		if der, err := ReadCertReply(bytes.NewReader(data)); err == nil && (len(der) == 0 || len(der) > MaxCertBytes) {
			t.Fatalf("certificate of %d bytes accepted", len(der))
		}
	})
}

func FuzzReadConnect(f *testing.F) {
	f.Add([]byte("CONNECT 127.0.0.2:10350 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
	f.Add([]byte("CONNECT [::1]:80 HTTP/1.1\r\n\r\nrest"))
	f.Add([]byte("CONNECT edge-1:10350 HTTP/1.0\r\nProxy-Authorization: Basic eDp5\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tg, rest, err := ReadConnect(bytes.NewReader(data))
		if err != nil {
			return
		}
		again, err := ParseTarget(tg.String())
		if err != nil || again != tg {
			t.Fatalf("target %+v does not round trip: %+v, %v", tg, again, err)
		}
		if len(rest) > len(data) {
			t.Fatalf("rest longer than input")
		}
	})
}
