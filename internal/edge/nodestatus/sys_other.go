//go:build !linux

package nodestatus

import (
	"errors"
	"runtime"
)

// edgecore runs on Linux only; this keeps the package building elsewhere.

func kernelRelease() (string, error) {
	return "", errors.New("uname: not supported on " + runtime.GOOS)
}

func fsCapacity(string) (int64, error) {
	return 0, errors.New("statfs: not supported on " + runtime.GOOS)
}
