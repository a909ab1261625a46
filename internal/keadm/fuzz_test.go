package keadm

import (
	"strings"
	"testing"
)

func FuzzParseLabels(f *testing.F) {
	for _, s := range []string{"zone=north", "a=b,c=d", "example.com/role=edge", "x", "=v", "k=", "k=v=w", "k=a,k=b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		items := strings.Split(s, ",")
		got, err := parseLabels(items)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		// Every accepted item is in the result with its value.
		for _, it := range items {
			k, v, _ := strings.Cut(it, "=")
			if got[k] != v {
				t.Fatalf("item %q: result has %q", it, got[k])
			}
		}
	})
}

func FuzzParseProcState(f *testing.F) {
	for _, s := range []string{
		"1234 (edgecore) S 1 1234 1234 0 -1",
		"1234 (a) b) Z 1",
		"1234 (x)",
		"garbage",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseProcState(b)
		if err == nil && (st == ' ' || !strings.Contains(string(b), ")")) {
			t.Fatalf("accepted %q with state %q", b, st)
		}
	})
}

func FuzzParsePID(f *testing.F) {
	for _, s := range []string{"1234\n", " 1 ", "0", "-5", "x", "", "99999999999999999999"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pid, err := parsePID(b)
		if err == nil && pid <= 0 {
			t.Fatalf("accepted pid %d from %q", pid, b)
		}
	})
}
