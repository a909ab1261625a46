package testenv

import (
	"os"
	"testing"
)

// RequireAllEnv names the environment variable that, when set to "1", turns
// every missing test dependency into a failure instead of a skip. CI sets it.
const RequireAllEnv = "KUBEEDGE_REQUIRE_ALL"

// Require skips the test with reason when ok is false, or fails it when
// KUBEEDGE_REQUIRE_ALL=1, so that a dependency missing in CI is an error and
// not a silent skip. Every testenv helper checks its preconditions with it.
func Require(t testing.TB, ok bool, reason string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv(RequireAllEnv) == "1" {
		t.Fatalf("%s (%s=1 forbids skipping)", reason, RequireAllEnv)
		return
	}
	t.Skip(reason)
}
