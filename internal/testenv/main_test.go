package testenv

import (
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// helperEnv makes the test binary act as a stand-in for a control plane
// binary (see startHelper): "run" waits to be killed, "ignore-term" also
// ignores SIGTERM.
const helperEnv = "TESTENV_HELPER_PROCESS"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		fallthrough
	default:
		for {
			time.Sleep(time.Hour)
		}
	}
	// No client-go goroutines need ignoring: Stop closes the admin client's
	// idle connections and the apiserver is gone by then.
	goleak.VerifyTestMain(m)
}
