package cri

import (
	"strings"
	"testing"
)

func TestParseEndpoint(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "unix:///run/containerd/containerd.sock", want: "/run/containerd/containerd.sock"},
		{in: "/run/containerd/containerd.sock", want: "/run/containerd/containerd.sock"},
		{in: "", err: "empty"},
		{in: "tcp://127.0.0.1:1234", err: `scheme "tcp" is not supported`},
		{in: "unix://run/containerd.sock", err: "no host"},
		{in: "unix:relative.sock", err: "not absolute"},
		{in: "unix:///x?y=1", err: "unexpected query"},
		{in: "unix:///" + strings.Repeat("a", 120), err: "longer than"},
		{in: "npipe:////./pipe/containerd", err: "not supported"},
	} {
		got, err := ParseEndpoint(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseEndpoint(%q) = %q, %v; want error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseEndpoint(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseEndpoint(f *testing.F) {
	for _, s := range []string{"unix:///run/containerd/containerd.sock", "/a.sock", "tcp://x", "unix://h/p", "unix:///\x00", "%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseEndpoint(s)
		if err != nil {
			return
		}
		if !strings.HasPrefix(p, "/") || len(p) > 107 || strings.ContainsRune(p, 0) {
			t.Fatalf("ParseEndpoint(%q) = %q: not a valid socket path", s, p)
		}
	})
}
