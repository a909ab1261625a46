package edged

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// fileEntry is one file of an API-data volume (configMap, secret,
// projected, downwardAPI).
type fileEntry struct {
	data []byte
	mode os.FileMode
}

const dataDirName = "..data"

// writeAtomic makes dir hold exactly payload (relative path -> file) the way
// the kubelet's atomic writer does, so that a container never sees a mix of
// old and new files: the files go into a fresh hidden directory
// "..<timestamp>.<random>", the "..data" symlink is switched to it with a
// rename (atomic), and each top-level entry is a symlink through "..data".
// Nothing is written when dir already holds the payload. It returns
// whether anything changed.
func writeAtomic(dir string, payload map[string]fileEntry, now time.Time) (bool, error) {
	for p := range payload {
		if err := validPayloadPath(p); err != nil {
			return false, err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("volume dir: %w", err)
	}
	dataLink := filepath.Join(dir, dataDirName)
	oldTS, err := os.Readlink(dataLink)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("volume dir: %w", err)
	}
	if oldTS != "" && sameContent(filepath.Join(dir, oldTS), payload) {
		return false, nil
	}
	tsDir, err := os.MkdirTemp(dir, now.UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return false, fmt.Errorf("volume dir: %w", err)
	}
	// MkdirTemp creates 0700; containers running as other users must read.
	if err := os.Chmod(tsDir, 0o755); err != nil {
		return false, fmt.Errorf("volume dir: %w", err)
	}
	for p, f := range payload {
		full := filepath.Join(tsDir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return false, fmt.Errorf("volume file %s: %w", p, err)
		}
		if err := os.WriteFile(full, f.data, f.mode); err != nil {
			return false, fmt.Errorf("volume file %s: %w", p, err)
		}
		// WriteFile's mode is filtered by the umask.
		if err := os.Chmod(full, f.mode); err != nil {
			return false, fmt.Errorf("volume file %s: %w", p, err)
		}
	}
	tmpLink := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmpLink)
	if err := os.Symlink(filepath.Base(tsDir), tmpLink); err != nil {
		return false, fmt.Errorf("volume dir: %w", err)
	}
	if err := os.Rename(tmpLink, dataLink); err != nil {
		return false, fmt.Errorf("volume dir: %w", err)
	}
	// Top-level user-visible entries point through ..data.
	want := map[string]bool{}
	for p := range payload {
		want[strings.SplitN(p, "/", 2)[0]] = true
	}
	for top := range want {
		link := filepath.Join(dir, top)
		target := path.Join(dataDirName, top)
		if cur, err := os.Readlink(link); err == nil && cur == target {
			continue
		}
		_ = os.RemoveAll(link)
		if err := os.Symlink(target, link); err != nil {
			return true, fmt.Errorf("volume link %s: %w", top, err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return true, fmt.Errorf("volume dir: %w", err)
	}
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, "..") {
			if n != dataDirName && n != filepath.Base(tsDir) {
				_ = os.RemoveAll(filepath.Join(dir, n)) // old timestamp dirs
			}
			continue
		}
		if !want[n] {
			_ = os.RemoveAll(filepath.Join(dir, n))
		}
	}
	return true, nil
}

// validPayloadPath refuses paths that could escape the volume or collide
// with the writer's own entries.
func validPayloadPath(p string) error {
	switch {
	case p == "":
		return configErr("volume item path is empty")
	case strings.HasPrefix(p, "/"):
		return configErr("volume item path %q must be relative", p)
	case strings.HasPrefix(p, ".."):
		return configErr("volume item path %q must not start with '..'", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return configErr("volume item path %q must not contain '..'", p)
		}
	}
	return nil
}

// sameContent reports whether dir holds exactly payload (data and mode).
func sameContent(dir string, payload map[string]fileEntry) bool {
	var found []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		found = append(found, filepath.ToSlash(rel))
		return nil
	})
	if err != nil || len(found) != len(payload) {
		return false
	}
	sort.Strings(found)
	for _, rel := range found {
		want, ok := payload[rel]
		if !ok {
			return false
		}
		full := filepath.Join(dir, filepath.FromSlash(rel))
		st, err := os.Stat(full)
		if err != nil || st.Mode().Perm() != want.mode.Perm() {
			return false
		}
		data, err := os.ReadFile(full)
		if err != nil || !bytes.Equal(data, want.data) {
			return false
		}
	}
	return true
}

// readCurrent returns the content of path in the volume's current data,
// if any.
func readCurrent(dir, p string) ([]byte, bool) {
	data, err := os.ReadFile(filepath.Join(dir, dataDirName, filepath.FromSlash(p)))
	if err != nil {
		return nil, false
	}
	return data, true
}
