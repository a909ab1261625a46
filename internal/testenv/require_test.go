package testenv

import (
	"fmt"
	"testing"
)

// recordingTB records Skip and Fatal instead of stopping the goroutine.
type recordingTB struct {
	testing.TB
	skipped, fatal string
}

func (r *recordingTB) Helper()                           {}
func (r *recordingTB) Skip(args ...any)                  { r.skipped = fmt.Sprint(args...) }
func (r *recordingTB) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }

func TestRequire(t *testing.T) {
	tests := []struct {
		name      string
		ok        bool
		env       string
		wantSkip  string
		wantFatal string
	}{
		{"present", true, "1", "", ""},
		{"missing skips", false, "", "no broker", ""},
		{"missing skips unless exactly 1", false, "true", "no broker", ""},
		{"missing fails in CI", false, "1", "", "no broker (KUBEEDGE_REQUIRE_ALL=1 forbids skipping)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(RequireAllEnv, tt.env)
			r := &recordingTB{TB: t}
			Require(r, tt.ok, "no broker")
			if r.skipped != tt.wantSkip || r.fatal != tt.wantFatal {
				t.Errorf("skipped %q, fatal %q; want %q, %q", r.skipped, r.fatal, tt.wantSkip, tt.wantFatal)
			}
		})
	}
}
