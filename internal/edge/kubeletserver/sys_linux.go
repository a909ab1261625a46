package kubeletserver

import (
	"fmt"
	"syscall"
)

// fsUsage is statfs(2) of the filesystem holding path, in bytes and inodes.
type fsUsage struct {
	capacity, available, used uint64
	inodes, inodesFree        uint64
}

func statFS(path string) (fsUsage, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return fsUsage{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	bs := uint64(st.Frsize)
	if bs == 0 {
		bs = uint64(st.Bsize)
	}
	u := fsUsage{capacity: uint64(st.Blocks) * bs, available: uint64(st.Bavail) * bs,
		inodes: uint64(st.Files), inodesFree: uint64(st.Ffree)}
	u.used = (uint64(st.Blocks) - uint64(st.Bfree)) * bs
	return u, nil
}
