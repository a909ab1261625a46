// Command localcontainerd starts and stops the private containerd of the
// local development edge node (`make up`, `make down`), detached so that it
// outlives this command, with the local pause and busybox images imported.
//
//	localcontainerd up     [-dir DIR] [-cgroup-root PATH]
//	localcontainerd down   [-dir DIR]
//	localcontainerd images [-dir DIR]   (re)build and import the images
//
// up and images print shell assignments for the caller to eval:
// CONTAINERD_ENDPOINT, CONTAINERD_CGROUP_ROOT, CONTAINERD_BRIDGE,
// CONTAINERD_SUBNET, PAUSE_IMAGE.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kubeedge-go/kubeedge/internal/testenv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "localcontainerd:", err)
		os.Exit(1)
	}
}

const usage = "usage: localcontainerd up|down|images [-dir DIR] [-cgroup-root PATH]"

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	fs := flag.NewFlagSet("localcontainerd "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "_output/local/containerd", "state directory (short: it holds the unix socket)")
	cgroupRoot := fs.String("cgroup-root", "/kubeedge-local", "cgroup under which edged puts pods; removed by down")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q; %s", fs.Args(), usage)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	switch args[0] {
	case "up":
		return up(ctx, *dir, *cgroupRoot, log, stdout)
	case "images":
		c, err := testenv.RunningContainerd(ctx, *dir)
		if err != nil {
			return err
		}
		if c == nil {
			return fmt.Errorf("no containerd runs in %s: run `localcontainerd up` first", *dir)
		}
		if err := importImages(ctx, c); err != nil {
			return err
		}
		printEnv(stdout, c)
		return nil
	case "down":
		if err := testenv.StopContainerdDetached(*dir, log); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "containerd in %s stopped\n", *dir)
		return nil
	default:
		return fmt.Errorf("unknown command %q; %s", args[0], usage)
	}
}

func up(ctx context.Context, dir, cgroupRoot string, log *slog.Logger, stdout io.Writer) error {
	c, err := testenv.RunningContainerd(ctx, dir)
	if err != nil {
		return err
	}
	if c == nil {
		// Leftovers of a crashed instance go first.
		if err := testenv.StopContainerdDetached(dir, log); err != nil {
			return err
		}
		start := time.Now()
		if c, err = testenv.StartContainerd(ctx, testenv.ContainerdOptions{Dir: dir, CgroupRoot: cgroupRoot, Detach: true, Logger: log}); err != nil {
			return err
		}
		log.Info("containerd started", "took", time.Since(start).Round(time.Millisecond))
	}
	if err := importImages(ctx, c); err != nil {
		return err
	}
	printEnv(stdout, c)
	return nil
}

func importImages(ctx context.Context, c *testenv.Containerd) error {
	root, err := testenv.RepoRoot(".")
	if err != nil {
		return err
	}
	cache, err := testenv.ImageCacheDir()
	if err != nil {
		return err
	}
	tars, err := testenv.BuildImages(ctx, root, cache)
	if err != nil {
		return err
	}
	return c.ImportImages(ctx, tars...)
}

func printEnv(w io.Writer, c *testenv.Containerd) {
	fmt.Fprintf(w, "CONTAINERD_ENDPOINT=%s\nCONTAINERD_CGROUP_ROOT=%s\nCONTAINERD_BRIDGE=%s\nCONTAINERD_SUBNET=%s\nPAUSE_IMAGE=%s\n",
		c.Endpoint, c.CgroupRoot, c.Bridge, c.Subnet, testenv.PauseImage)
}
