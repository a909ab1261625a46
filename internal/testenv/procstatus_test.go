package testenv

import (
	"os"
	"strings"
	"testing"
)

func TestProcStatusKiB(t *testing.T) {
	self, err := ProcStatusKiB(0, "VmRSS")
	if err != nil || self <= 0 {
		t.Fatalf("own VmRSS = %d, %v; want a positive size", self, err)
	}
	byPID, err := ProcStatusKiB(os.Getpid(), "RssFile")
	if err != nil || byPID <= 0 {
		t.Fatalf("RssFile by pid = %d, %v; want a positive size", byPID, err)
	}
	if _, err := ProcStatusKiB(0, "NoSuchField"); err == nil || !strings.Contains(err.Error(), "has no NoSuchField") {
		t.Errorf("missing field: %v, want an error naming it", err)
	}
	if _, err := ProcStatusKiB(0, "Name"); err == nil || !strings.Contains(err.Error(), `Name "`) {
		t.Errorf("field that is not a number: %v, want an error quoting it", err)
	}
}

func TestProcCPU(t *testing.T) {
	for range 200000 { // burn a little CPU so that the count is not 0
		_ = strings.Repeat("x", 8)
	}
	comm, ticks, err := ProcCPU(os.Getpid())
	if err != nil || comm == "" || ticks < 0 {
		t.Fatalf("ProcCPU(self) = %q, %d, %v", comm, ticks, err)
	}
	if _, _, err := ProcCPU(1 << 30); err == nil {
		t.Error("ProcCPU of a pid that does not exist succeeded")
	}
}
