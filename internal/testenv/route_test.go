package testenv

import (
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

func TestClaimServiceRangeConcurrent(t *testing.T) {
	Require(t, os.Geteuid() == 0, "claiming service ranges adds routes: needs root")
	const n = 6
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		claimed []netip.Prefix // guarded by mu
		errs    []error        // guarded by mu
	)
	for range n {
		wg.Go(func() {
			p, added, err := claimServiceRange(netip.Prefix{})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			if !added {
				t.Errorf("claim of %s added no route", p)
				return
			}
			claimed = append(claimed, p)
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, p := range claimed {
			if err := removeBlackhole(p); err != nil {
				t.Error(err)
			}
		}
	})
	if len(errs) > 0 {
		t.Fatalf("claims failed: %v", errs)
	}
	seen := map[netip.Prefix]bool{}
	for _, p := range claimed {
		if seen[p] {
			t.Fatalf("range %s claimed twice: %v", p, claimed)
		}
		seen[p] = true
		if !hasBlackhole(t, p) {
			t.Errorf("no blackhole route for claimed %s", p)
		}
	}

	// Asking for a taken range is an error that says what to do.
	_, _, err := claimServiceRange(claimed[0])
	if err == nil || !strings.Contains(err.Error(), "a route for it already exists") {
		t.Fatalf("claim of taken %s = %v, want an error", claimed[0], err)
	}

}

// TestRemoveBlackhole uses 10.95.N.0/24, which no control plane claims on its
// own, so that no concurrent test can add the route back between the removal
// and the check.
func TestRemoveBlackhole(t *testing.T) {
	Require(t, os.Geteuid() == 0, "adding routes needs root")
	var p netip.Prefix
	for n := range 256 {
		c := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 95, byte(n), 0}), 24)
		err := addBlackhole(c)
		if errors.Is(err, errRouteExists) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		p = c
		break
	}
	if !p.IsValid() {
		t.Fatal("all of 10.95.N.0/24 taken")
	}
	if !hasBlackhole(t, p) {
		t.Fatalf("no route %s after addBlackhole", p)
	}
	if err := removeBlackhole(p); err != nil {
		t.Fatal(err)
	}
	if hasBlackhole(t, p) {
		t.Errorf("route %s still present after removeBlackhole", p)
	}
	// Removing twice is fine (Stop after StopDetached, a crashed run).
	if err := removeBlackhole(p); err != nil {
		t.Errorf("second removeBlackhole: %v", err)
	}
}

func hasBlackhole(t *testing.T, p netip.Prefix) bool {
	t.Helper()
	out, err := exec.Command("ip", "route", "show", "exact", p.String(), "type", "blackhole").CombinedOutput()
	if err != nil {
		t.Fatalf("ip route show: %v: %s", err, out)
	}
	return strings.Contains(string(out), p.String())
}

func TestFirstIP(t *testing.T) {
	for in, want := range map[string]string{
		"10.96.0.0/24": "10.96.0.1", "10.96.3.0/24": "10.96.3.1", "fd00:10:96::/112": "fd00:10:96::1",
	} {
		if got := firstIP(netip.MustParsePrefix(in)); got.String() != want {
			t.Errorf("firstIP(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestParseRouteFile(t *testing.T) {
	tests := []struct{ in, want, wantErr string }{
		{"10.96.4.0/24\n", "10.96.4.0/24", ""},
		{"  fd00::/64 ", "fd00::/64", ""},
		{"10.96.4.1/24", "", "not a network address"},
		{"", "", "route file"},
		{"10.96.4.0", "", "no '/'"},
	}
	for _, tt := range tests {
		p, err := parseRouteFile([]byte(tt.in))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseRouteFile(%q) = %v, %v; want error containing %q", tt.in, p, err, tt.wantErr)
			}
			continue
		}
		if err != nil || p.String() != tt.want {
			t.Errorf("parseRouteFile(%q) = %v, %v; want %s", tt.in, p, err, tt.want)
		}
	}
}
