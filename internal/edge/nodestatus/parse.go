package nodestatus

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// parseMemTotal returns MemTotal from /proc/meminfo content, in bytes.
func parseMemTotal(data []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("meminfo: MemTotal line %q is not \"MemTotal: <n> kB\"", sc.Text())
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb <= 0 {
			return 0, fmt.Errorf("meminfo: MemTotal %q is not a positive number", f[0])
		}
		if kb > math.MaxInt64/1024 {
			return 0, fmt.Errorf("meminfo: MemTotal %d kB overflows", kb)
		}
		return kb * 1024, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("meminfo: %w", err)
	}
	return 0, fmt.Errorf("meminfo: no MemTotal line")
}

// parseOSRelease reads os-release(5) content: KEY=value lines, values
// optionally quoted shell-style. Malformed lines are skipped, as systemd does.
func parseOSRelease(data []byte) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			continue
		}
		out[k] = unquoteShell(v)
	}
	return out
}

// unquoteShell undoes the quoting os-release allows: "..." with backslash
// escapes of $ " \ and `, or '...' taken literally.
func unquoteShell(v string) string {
	if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
		return v[1 : len(v)-1]
	}
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return v
	}
	v = v[1 : len(v)-1]
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) && strings.IndexByte("$\"\\`", v[i+1]) >= 0 {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// parseDefaultRoute returns the interface of the IPv4 default route with the
// lowest metric in /proc/net/route content, or "" when there is none.
func parseDefaultRoute(data []byte) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	if !sc.Scan() {
		return "", nil
	}
	hdr := strings.Fields(sc.Text())
	col := map[string]int{}
	for i, h := range hdr {
		col[h] = i
	}
	for _, want := range []string{"Iface", "Destination", "Flags", "Metric", "Mask"} {
		if _, ok := col[want]; !ok {
			return "", fmt.Errorf("net/route: header %q has no %s column", sc.Text(), want)
		}
	}
	best, bestMetric := "", uint64(math.MaxUint64)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != len(hdr) {
			continue
		}
		if f[col["Destination"]] != "00000000" || f[col["Mask"]] != "00000000" {
			continue
		}
		flags, err := strconv.ParseUint(f[col["Flags"]], 16, 32)
		if err != nil || flags&0x1 == 0 { // RTF_UP
			continue
		}
		metric, err := strconv.ParseUint(f[col["Metric"]], 10, 64)
		if err != nil {
			continue
		}
		if metric < bestMetric {
			best, bestMetric = f[col["Iface"]], metric
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("net/route: %w", err)
	}
	return best, nil
}
