package integration

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kubeedge-go/kubeedge/internal/testenv"
)

// shared is one control plane for the whole package: starting one costs
// seconds, and every test uses its own node and namespace names.
var (
	shared       *testenv.ControlPlane
	sharedReason string
)

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "keit")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		cp, err := testenv.StartControlPlane(ctx, testenv.ControlPlaneOptions{
			Dir:                    dir,
			ControllerManager:      true,
			NodeMonitorGracePeriod: 20 * time.Second,
			Logger:                 slog.New(slog.DiscardHandler),
		})
		cancel()
		if err != nil {
			sharedReason = fmt.Sprintf("no control plane (build it with `make k8s`): %v", err)
		} else {
			shared = cp
			defer func() {
				if err := cp.Stop(); err != nil {
					fmt.Fprintln(os.Stderr, "stop control plane:", err)
				}
			}()
		}
		return m.Run()
	}()
	if code == 0 {
		if err := goleak.Find(
			// client-go and klog start process-wide background goroutines on first use.
			goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
			goleak.IgnoreAnyFunction("k8s.io/client-go/util/workqueue.(*Typed[...]).updateUnfinishedWorkLoop"),
			goleak.IgnoreAnyFunction("k8s.io/client-go/util/workqueue.(*typedDelayingType[...]).waitingLoop"),
			goleak.IgnoreAnyFunction("k8s.io/apimachinery/pkg/util/wait.BackoffUntilWithContext.func1"),
			goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
			goleak.IgnoreAnyFunction("golang.org/x/net/http2.(*clientConnReadLoop).run"),
			goleak.IgnoreAnyFunction("golang.org/x/net/http2.(*ClientConn).readLoop"),
		); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// controlPlane returns the shared control plane, or skips (fails in CI) with the reason.
func controlPlane(t *testing.T) *testenv.ControlPlane {
	t.Helper()
	testenv.Require(t, shared != nil, sharedReason)
	return shared
}
