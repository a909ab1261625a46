package testenv

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
)

// errRouteExists and errRouteDenied classify failures of `ip route add`.
var (
	errRouteExists = errors.New("testenv: route exists")
	errRouteDenied = errors.New("testenv: not permitted to add routes")
)

// defaultServiceCIDR is used when no route can be claimed. Without the route
// nothing keeps ranges apart, but then no pod can run either, so Service IPs
// are never dialled.
func defaultServiceCIDR() netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 96, 0, 0}), 24)
}

// claimServiceRange picks the service range of a new control plane and
// blackholes it on the host, so that a pod dialling a Service IP that nothing
// translates can never send packets off the machine. Without want it tries
// 10.96.N.0/24 for N = 0..255: the kernel refuses to add an existing route,
// which makes the claim race-free between concurrent processes. It returns
// whether a route was added; without root (or CAP_NET_ADMIN) it adds none.
func claimServiceRange(want netip.Prefix) (netip.Prefix, bool, error) {
	if os.Geteuid() != 0 {
		if want.IsValid() {
			return want, false, nil
		}
		return defaultServiceCIDR(), false, nil
	}
	if want.IsValid() {
		err := addBlackhole(want)
		switch {
		case errors.Is(err, errRouteDenied):
			return want, false, nil
		case errors.Is(err, errRouteExists):
			return netip.Prefix{}, false, fmt.Errorf("service range %s: a route for it already exists (another control plane, or a leftover: `ip route del %s`)", want, want)
		case err != nil:
			return netip.Prefix{}, false, fmt.Errorf("service range %s: %w", want, err)
		}
		return want, true, nil
	}
	for n := range 256 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 96, byte(n), 0}), 24)
		err := addBlackhole(p)
		switch {
		case err == nil:
			return p, true, nil
		case errors.Is(err, errRouteExists):
			continue
		case errors.Is(err, errRouteDenied):
			return defaultServiceCIDR(), false, nil
		default:
			return netip.Prefix{}, false, fmt.Errorf("claim service range: %w", err)
		}
	}
	return netip.Prefix{}, false, errors.New("claim service range: all of 10.96.0.0/24 to 10.96.255.0/24 are taken (leftover routes? see `ip route show type blackhole`)")
}

func addBlackhole(p netip.Prefix) error {
	out, err := exec.Command("ip", "route", "add", "blackhole", p.String()).CombinedOutput()
	if err == nil {
		return nil
	}
	msg := strings.TrimSpace(string(out))
	switch {
	case strings.Contains(msg, "File exists"):
		return errRouteExists
	case strings.Contains(msg, "Operation not permitted"):
		return fmt.Errorf("%w: %s", errRouteDenied, msg)
	}
	return fmt.Errorf("ip route add blackhole %s: %v: %s", p, err, msg)
}

// removeBlackhole deletes a route added by claimServiceRange; a route that is
// already gone is not an error.
func removeBlackhole(p netip.Prefix) error {
	out, err := exec.Command("ip", "route", "del", "blackhole", p.String()).CombinedOutput()
	if err == nil {
		return nil
	}
	msg := strings.TrimSpace(string(out))
	if strings.Contains(msg, "No such process") {
		return nil
	}
	return fmt.Errorf("ip route del blackhole %s: %v: %s", p, err, msg)
}

// firstIP returns the first host address of p, the ClusterIP of the
// "kubernetes" Service.
func firstIP(p netip.Prefix) netip.Addr {
	return p.Masked().Addr().Next()
}

// parseRouteFile parses the content of Dir/route.
func parseRouteFile(data []byte) (netip.Prefix, error) {
	s := strings.TrimSpace(string(data))
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("route file: %w", err)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("route file: %s is not a network address (want %s)", p, p.Masked())
	}
	return p, nil
}
