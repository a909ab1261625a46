package testenv

import (
	"path/filepath"
	"strings"
	"testing"
)

func FuzzParsePID(f *testing.F) {
	for _, s := range []string{"1234\n", "", "0", "-1", "99999999999999999999", " 7 \n", "0x10"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pid, err := parsePID(data)
		if err == nil && pid <= 1 {
			t.Fatalf("parsePID(%q) = %d without error", data, pid)
		}
		if err != nil && pid != 0 {
			t.Fatalf("parsePID(%q) = %d with error %v", data, pid, err)
		}
	})
}

func FuzzParseRouteFile(f *testing.F) {
	for _, s := range []string{"10.96.0.0/24\n", "10.96.0.1/24", "fd00::/64", "", "/", "10.96.0.0/33", "::ffff:10.0.0.0/120"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := parseRouteFile(data)
		if err != nil {
			return
		}
		if !p.IsValid() || p != p.Masked() {
			t.Fatalf("parseRouteFile(%q) = %v, not a valid network", data, p)
		}
	})
}

func FuzzCmdlineMatches(f *testing.F) {
	f.Add([]byte("/x/bin/etcd\x00--data-dir=/tmp/kecp1/etcd\x00"), "etcd", "/tmp/kecp1")
	f.Add([]byte(""), "etcd", "/tmp/kecp1")
	f.Add([]byte("\x00\x00\x00"), "", "")
	f.Fuzz(func(t *testing.T, cmdline []byte, name, dir string) {
		if !cmdlineMatches(cmdline, name, dir) {
			return
		}
		args := strings.Split(string(cmdline), "\x00")
		if filepath.Base(args[0]) != name {
			t.Fatalf("matched %q for name %q", cmdline, name)
		}
		if !strings.Contains(string(cmdline), dir+"/") {
			t.Fatalf("matched %q without dir %q", cmdline, dir)
		}
	})
}
