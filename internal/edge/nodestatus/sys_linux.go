package nodestatus

import (
	"fmt"
	"syscall"
)

// kernelRelease is uname(2)'s release field.
func kernelRelease() (string, error) {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return "", fmt.Errorf("uname: %w", err)
	}
	return utsString(u.Release[:]), nil
}

// utsString converts a NUL-terminated utsname field; its element type is
// int8 or uint8 depending on the architecture.
func utsString[T int8 | uint8](a []T) string {
	b := make([]byte, 0, len(a))
	for _, c := range a {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

// fsCapacity is the size in bytes of the filesystem holding path.
func fsCapacity(path string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	bs := int64(st.Frsize)
	if bs <= 0 {
		bs = int64(st.Bsize)
	}
	return int64(st.Blocks) * bs, nil
}
