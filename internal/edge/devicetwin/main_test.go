package devicetwin

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if runKillChild() {
		return
	}
	goleak.VerifyTestMain(m)
}
