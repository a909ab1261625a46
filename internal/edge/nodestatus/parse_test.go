package nodestatus

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseMemTotal(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    int64
		wantErr string
	}{
		{"MemTotal:       16318496 kB\nMemFree: 1 kB\n", 16318496 * 1024, ""},
		{"MemFree: 1 kB\nMemTotal: 2 kB", 2048, ""},
		{"MemFree: 1 kB\n", 0, "no MemTotal line"},
		{"MemTotal: 12\n", 0, `is not "MemTotal: <n> kB"`},
		{"MemTotal: x kB\n", 0, `MemTotal "x" is not a positive number`},
		{"MemTotal: -5 kB\n", 0, `MemTotal "-5" is not a positive number`},
		{"MemTotal: 9223372036854775807 kB\n", 0, "overflows"},
	} {
		got, err := parseMemTotal([]byte(tc.in))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseMemTotal(%q): error %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseMemTotal(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestParseOSRelease(t *testing.T) {
	in := "# c\nNAME=Plain\nPRETTY_NAME=\"A \\\"b\\\" \\$c \\\\d\"\nID='single \"q\"'\nbroken line\n=novalue\nEMPTY=\n"
	want := map[string]string{"NAME": "Plain", "PRETTY_NAME": `A "b" $c \d`, "ID": `single "q"`, "EMPTY": ""}
	if diff := cmp.Diff(want, parseOSRelease([]byte(in))); diff != "" {
		t.Errorf("parseOSRelease (-want +got):\n%s", diff)
	}
}

func TestParseDefaultRoute(t *testing.T) {
	fixture, err := os.ReadFile("testdata/root/proc/net/route")
	if err != nil {
		t.Fatal(err)
	}
	hdr := "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
	for _, tc := range []struct {
		name, in, want, wantErr string
	}{
		{"fixture lowest metric", string(fixture), "eth0", ""},
		{"empty", "", "", ""},
		{"no default", hdr + "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n", "", ""},
		{"default down", hdr + "eth0\t00000000\t010200C0\t0002\t0\t0\t0\t00000000\t0\t0\t0\n", "", ""},
		{"short row skipped", hdr + "eth0\t00000000\n", "", ""},
		{"bad header", "Iface Dest\n", "", "has no Destination column"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseDefaultRoute([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseDefaultRoute = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
