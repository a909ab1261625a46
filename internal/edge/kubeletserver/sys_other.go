//go:build !linux

package kubeletserver

import (
	"errors"
	"runtime"
)

// edgecore runs on Linux only; this keeps the package building elsewhere.

type fsUsage struct {
	capacity, available, used uint64
	inodes, inodesFree        uint64
}

func statFS(string) (fsUsage, error) {
	return fsUsage{}, errors.New("statfs: not supported on " + runtime.GOOS)
}
