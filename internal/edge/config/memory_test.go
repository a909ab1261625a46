package config

import (
	"strings"
	"testing"
)

func TestMemoryValidate(t *testing.T) {
	c := Default("edge-1")
	if !c.Memory.ReleaseStartupPages || c.Memory.ReleaseAfterSeconds <= 0 {
		t.Fatalf("default memory section %+v: want start-up pages released after a positive delay", c.Memory)
	}
	c.Memory.ReleaseAfterSeconds = 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "memory.releaseAfterSeconds: must be greater than 0") {
		t.Errorf("Validate() = %v, want it to name memory.releaseAfterSeconds", err)
	}
	c.Memory.ReleaseStartupPages = false
	if err := c.Validate(); err != nil {
		t.Errorf("switched off, the delay does not matter: %v", err)
	}
}
