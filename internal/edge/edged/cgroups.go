package edged

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"k8s.io/apimachinery/pkg/types"
)

// qosDirs are the parents of pod cgroups under <cgroupRoot>/kubepods.
var qosDirs = []string{"", "burstable", "besteffort"}

// hierarchies lists the mounted cgroup v1 hierarchies (cpu, memory, ...);
// symlinks such as cpu,cpuacct name the same hierarchy and are skipped.
func (e *Edged) hierarchies() []string {
	entries, err := os.ReadDir(e.cfg.CgroupFS)
	if err != nil {
		return nil
	}
	var out []string
	for _, en := range entries {
		if en.IsDir() {
			out = append(out, filepath.Join(e.cfg.CgroupFS, en.Name()))
		}
	}
	return out
}

// podCgroupUIDs lists the pod UIDs that have a cgroup in any hierarchy.
func (e *Edged) podCgroupUIDs() map[types.UID]bool {
	out := map[types.UID]bool{}
	for _, h := range e.hierarchies() {
		for _, q := range qosDirs {
			dir := filepath.Join(h, e.cfg.CgroupRoot, "kubepods", q)
			entries, err := os.ReadDir(dir)
			if err != nil {
				continue
			}
			for _, en := range entries {
				if en.IsDir() && strings.HasPrefix(en.Name(), "pod") {
					out[types.UID(strings.TrimPrefix(en.Name(), "pod"))] = true
				}
			}
		}
	}
	return out
}

// removePodCgroups removes pod<uid> (and any container cgroups runc left
// in it) from every hierarchy. A cgroup that still has processes cannot be
// removed; that is reported and retried by housekeeping.
func (e *Edged) removePodCgroups(uid types.UID) error {
	var errs []error
	for _, h := range e.hierarchies() {
		for _, q := range qosDirs {
			dir := filepath.Join(h, e.cfg.CgroupRoot, "kubepods", q, "pod"+string(uid))
			if err := removeCgroupDir(dir); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// removeCgroupDir removes a cgroup directory tree bottom-up (cgroupfs
// directories are removed with rmdir, never by unlinking their files).
func removeCgroupDir(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return filepath.SkipDir
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cgroup %s: %w", dir, err)
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
			if errors.Is(err, syscall.ENOTDIR) {
				continue
			}
			// A plain directory (tests, or a non-cgroup fs) still holds
			// files: fall back to removing it as such.
			if errors.Is(err, syscall.ENOTEMPTY) && !isCgroupFS(d) {
				if rerr := os.RemoveAll(d); rerr == nil {
					continue
				}
			}
			return fmt.Errorf("remove cgroup %s: %w", d, err)
		}
	}
	return nil
}

// isCgroupFS reports whether p is on a cgroup filesystem.
func isCgroupFS(p string) bool {
	var st syscall.Statfs_t
	if err := syscall.Statfs(p, &st); err != nil {
		return false
	}
	const cgroupSuperMagic, cgroup2SuperMagic = 0x27e0eb, 0x63677270
	return st.Type == cgroupSuperMagic || st.Type == cgroup2SuperMagic
}
