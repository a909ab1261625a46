// Command pause is the infrastructure container of every pod sandbox
// (localhost/kubeedge/pause:3.10). It holds the pod's namespaces open: as PID
// 1 of the sandbox it sleeps until SIGINT or SIGTERM and reaps any child that
// is re-parented to it, so that zombies never pile up in a pod that shares
// its PID namespace. Built statically (CGO_ENABLED=0) by
// internal/testenv.BuildPauseImage.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		fmt.Println("pause (kubeedge-go) 3.10")
		return
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s == syscall.SIGCHLD {
			reap()
			continue
		}
		// Exit code 0 on a requested stop, as the upstream pause does.
		os.Exit(0)
	}
}

// reap collects every exited child without blocking; several SIGCHLDs may
// have been merged into one.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
	}
}
