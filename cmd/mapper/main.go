// Command mapper is a KubeEdge-compatible device mapper: `mapper modbus`,
// `mapper opcua`, `mapper ble`; see internal/mappers/app.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/kubeedge-go/kubeedge/internal/mappers/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.Main(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "mapper:", err)
		os.Exit(1)
	}
}
