package nodestatus

import (
	"os"
	"strings"
	"testing"
)

func addFile(f *testing.F, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
}

func FuzzParseMemTotal(f *testing.F) {
	addFile(f, "testdata/root/proc/meminfo")
	f.Add([]byte("MemTotal: 1 kB"))
	f.Add([]byte("MemTotal:\n"))
	f.Add([]byte("MemTotal: 99999999999999999999 kB"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := parseMemTotal(data)
		if err == nil && (n <= 0 || n%1024 != 0) {
			t.Fatalf("parseMemTotal(%q) = %d without error", data, n)
		}
	})
}

func FuzzParseOSRelease(f *testing.F) {
	addFile(f, "testdata/root/etc/os-release")
	f.Add([]byte(`PRETTY_NAME="\"`))
	f.Add([]byte("A='\nB=\"\\"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for k := range parseOSRelease(data) {
			if k == "" || strings.ContainsAny(k, "=\n") {
				t.Fatalf("parseOSRelease(%q) returned key %q", data, k)
			}
		}
	})
}

func FuzzParseDefaultRoute(f *testing.F) {
	addFile(f, "testdata/root/proc/net/route")
	f.Add([]byte("Iface Destination Flags Metric Mask\nx 00000000 zz 1 00000000\n"))
	f.Add([]byte("Iface Destination Flags Metric Mask\nx 00000000 1 99999999999999999999999 00000000\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		iface, err := parseDefaultRoute(data)
		if err == nil && iface != "" && !strings.Contains(string(data), iface) {
			t.Fatalf("parseDefaultRoute(%q) = %q, not in the input", data, iface)
		}
	})
}
