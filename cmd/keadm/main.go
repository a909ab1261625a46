// Command keadm joins edge nodes to the cloud; see internal/keadm.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/kubeedge-go/kubeedge/internal/cloud/devicecontroller"
	"github.com/kubeedge-go/kubeedge/internal/cloud/objectsync"
	"github.com/kubeedge-go/kubeedge/internal/keadm"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := keadm.NewCommand(keadm.Deps{InstallCRDs: installCRDs}).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "keadm:", err)
		os.Exit(1)
	}
}

func installCRDs(ctx context.Context, cfg *rest.Config) error {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if err := objectsync.InstallCRDs(ctx, dyn); err != nil {
		return err
	}
	return devicecontroller.InstallCRDs(ctx, dyn)
}
