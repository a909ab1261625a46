package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ImageTar is a docker-archive tar holding one tagged image.
type ImageTar struct {
	Name string // e.g. PauseImage
	Path string
}

// busyboxPath is where Debian's busybox-static installs its binary.
const busyboxPath = "/bin/busybox"

// imageBuilderVersion is part of every cache key: bump it when the layout of
// a built image changes.
const imageBuilderVersion = "1"

// ImageCacheDir returns <repo root>/_output/images, with the repo root found
// from the working directory.
func ImageCacheDir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("image cache: %w", err)
	}
	root, err := RepoRoot(wd)
	if err != nil {
		return "", fmt.Errorf("image cache: %w", err)
	}
	return filepath.Join(root, "_output", "images"), nil
}

// BuildImages builds (or finds in cacheDir) the pause and busybox images.
// repoRoot is the module root holding cmd/pause.
func BuildImages(ctx context.Context, repoRoot, cacheDir string) ([]ImageTar, error) {
	pause, err := BuildPauseImage(ctx, repoRoot, cacheDir)
	if err != nil {
		return nil, err
	}
	bb, err := BuildBusyboxImage(cacheDir)
	if err != nil {
		return nil, err
	}
	return []ImageTar{pause, bb}, nil
}

// BuildPauseImage compiles cmd/pause statically and packs it as PauseImage:
// a single /pause binary run as 65535:65535 like the upstream image. The tar
// is cached in cacheDir under a key of the Go version and the sources.
func BuildPauseImage(ctx context.Context, repoRoot, cacheDir string) (ImageTar, error) {
	goBin, err := goTool()
	if err != nil {
		return ImageTar{}, err
	}
	ver, err := exec.CommandContext(ctx, goBin, "version").Output()
	if err != nil {
		return ImageTar{}, fmt.Errorf("pause image: go version: %w", err)
	}
	srcs, err := filepath.Glob(filepath.Join(repoRoot, "cmd", "pause", "*.go"))
	if err != nil || len(srcs) == 0 {
		return ImageTar{}, fmt.Errorf("pause image: no sources in %s", filepath.Join(repoRoot, "cmd", "pause"))
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n", imageBuilderVersion, ver, runtime.GOARCH)
	for _, s := range srcs {
		data, err := os.ReadFile(s)
		if err != nil {
			return ImageTar{}, fmt.Errorf("pause image: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(s), len(data))
		h.Write(data)
	}
	out := filepath.Join(cacheDir, "pause-3.10-"+hex.EncodeToString(h.Sum(nil))[:12]+".tar")
	it := ImageTar{Name: PauseImage, Path: out}
	if _, err := os.Stat(out); err == nil {
		return it, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return ImageTar{}, fmt.Errorf("pause image: %w", err)
	}
	binDir, err := os.MkdirTemp(cacheDir, "pause-build")
	if err != nil {
		return ImageTar{}, fmt.Errorf("pause image: %w", err)
	}
	defer os.RemoveAll(binDir)
	bin := filepath.Join(binDir, "pause")
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd/pause")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		return ImageTar{}, fmt.Errorf("pause image: go build ./cmd/pause: %w\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return ImageTar{}, fmt.Errorf("pause image: %w", err)
	}
	files := []layerEntry{{path: "pause", mode: 0o755, data: data}}
	cfg := v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535", Env: []string{"PATH=/"}}
	if err := writeImageTar(out, PauseImage, files, cfg); err != nil {
		return ImageTar{}, fmt.Errorf("pause image: %w", err)
	}
	return it, nil
}

// BuildBusyboxImage packs the host's static busybox with a symlink per applet,
// /etc/passwd and /etc/group (root and nobody) and a 1777 /tmp as
// BusyboxImage. Cached in cacheDir under a key of the busybox binary.
func BuildBusyboxImage(cacheDir string) (ImageTar, error) {
	data, err := os.ReadFile(busyboxPath)
	if err != nil {
		return ImageTar{}, fmt.Errorf("busybox image: %w (install busybox-static: hack/install-deps.sh)", err)
	}
	sum := sha256.Sum256(append([]byte(imageBuilderVersion+"\n"), data...))
	out := filepath.Join(cacheDir, "busybox-1-"+hex.EncodeToString(sum[:])[:12]+".tar")
	it := ImageTar{Name: BusyboxImage, Path: out}
	if _, err := os.Stat(out); err == nil {
		return it, nil
	}
	list, err := exec.Command(busyboxPath, "--list-full").Output()
	if err != nil {
		return ImageTar{}, fmt.Errorf("busybox image: busybox --list-full: %w", err)
	}
	files := []layerEntry{
		{path: "bin/busybox", mode: 0o755, data: data},
		{path: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n")},
		{path: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnobody:x:65534:\n")},
		{path: "tmp", dir: true, mode: 0o1777},
		{path: "root", dir: true, mode: 0o700},
		{path: "home", dir: true, mode: 0o755},
		{path: "var", dir: true, mode: 0o755},
		{path: "proc", dir: true, mode: 0o555},
		{path: "sys", dir: true, mode: 0o555},
		{path: "dev", dir: true, mode: 0o755},
	}
	for _, applet := range strings.Fields(string(list)) {
		applet = strings.TrimPrefix(applet, "/")
		if applet == "bin/busybox" || applet == "" {
			continue
		}
		files = append(files, layerEntry{path: applet, link: "/bin/busybox"})
	}
	cfg := v1.Config{Cmd: []string{"sh"}, Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return ImageTar{}, fmt.Errorf("busybox image: %w", err)
	}
	if err := writeImageTar(out, BusyboxImage, files, cfg); err != nil {
		return ImageTar{}, fmt.Errorf("busybox image: %w", err)
	}
	return it, nil
}

// layerEntry is one file, directory or symlink of a layer.
type layerEntry struct {
	path string
	dir  bool
	link string
	mode int64
	data []byte
}

// layerTar renders entries as an uncompressed tar with the parent
// directories they need, in a stable order and with a fixed timestamp, so
// that the same inputs always give the same image ID.
func layerTar(entries []layerEntry) ([]byte, error) {
	byPath := map[string]layerEntry{}
	for _, e := range entries {
		byPath[e.path] = e
		for d := filepath.Dir(e.path); d != "." && d != "/"; d = filepath.Dir(d) {
			if _, ok := byPath[d]; !ok {
				byPath[d] = layerEntry{path: d, dir: true, mode: 0o755}
			}
		}
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(0, 0)
	for _, p := range paths {
		e := byPath[p]
		hdr := &tar.Header{Name: p, Mode: e.mode, ModTime: mtime, Format: tar.FormatPAX}
		switch {
		case e.dir:
			hdr.Typeflag, hdr.Name = tar.TypeDir, p+"/"
		case e.link != "":
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, e.link, 0o777
		default:
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer %s: %w", p, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, fmt.Errorf("layer %s: %w", p, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return buf.Bytes(), nil
}

// writeImageTar writes a one-layer image tagged ref as a docker-archive tar
// at path, atomically (concurrent test processes may build the same image).
func writeImageTar(path, ref string, entries []layerEntry, cfg v1.Config) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image name %q: %w", ref, err)
	}
	layerData, err := layerTar(entries)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerData)), nil
	})
	if err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Config = runtime.GOARCH, "linux", cfg
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ImportImages loads image tars into containerd's k8s.io namespace (the one
// its CRI serves) with ctr, and checks through CRI that each is there.
func (c *Containerd) ImportImages(ctx context.Context, tars ...ImageTar) error {
	for _, it := range tars {
		cmd := exec.CommandContext(ctx, mustLookPath("ctr"), "-a", c.Socket, "-n", "k8s.io", "images", "import", it.Path)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("import %s from %s: %w\n%s", it.Name, it.Path, err, out)
		}
	}
	conn, err := dialCRI(c.Socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	img := runtimeapi.NewImageServiceClient(conn)
	for _, it := range tars {
		resp, err := img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: it.Name}})
		if err != nil {
			return fmt.Errorf("image status %s: %w", it.Name, err)
		}
		if resp.GetImage() == nil {
			return fmt.Errorf("import %s: CRI does not see the image after ctr import", it.Name)
		}
	}
	return nil
}

// goTool finds the go command: PATH first, then where the machines keep Go.
func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	const p = "/usr/local/go/bin/go"
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	return "", errors.New("go tool not found in PATH or /usr/local/go/bin (needed to build the pause image)")
}
