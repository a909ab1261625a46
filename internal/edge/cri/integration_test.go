package cri_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubeedge-go/kubeedge/internal/edge/cri"
	"github.com/kubeedge-go/kubeedge/internal/testenv"
)

// TestAgainstContainerd drives every call edged uses against a real
// containerd: a host-network sandbox, a busybox container with env, limits
// and a log file, exec, stats, stop and removal, and a pull from a registry
// on loopback.
func TestAgainstContainerd(t *testing.T) {
	ctd := testenv.ContainerdForTest(t, testenv.ContainerdOptions{})
	c, err := cri.Dial(ctd.Endpoint, cri.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	v, err := c.Version(ctx)
	if err != nil || v.RuntimeName != "containerd" {
		t.Fatalf("Version = %v, %v", v, err)
	}
	st, err := c.Status(ctx)
	if err != nil || len(st.GetConditions()) < 2 {
		t.Fatalf("Status = %v, %v", st, err)
	}
	img, err := c.ImageStatus(ctx, testenv.BusyboxImage)
	if err != nil || img == nil || img.GetSize() == 0 {
		t.Fatalf("ImageStatus(busybox) = %v, %v", img, err)
	}
	if img, err := c.ImageStatus(ctx, "localhost/kubeedge/none:1"); img != nil || err != nil {
		t.Fatalf("ImageStatus(missing) = %v, %v; want nil, nil", img, err)
	}
	imgs, err := c.ListImages(ctx, nil)
	if err != nil || len(imgs) < 2 {
		t.Fatalf("ListImages = %d images, %v", len(imgs), err)
	}
	fs, err := c.ImageFsInfo(ctx)
	// Usage is computed in the background; right after start it may be 0.
	if err != nil || len(fs) == 0 || fs[0].GetFsId().GetMountpoint() == "" {
		t.Fatalf("ImageFsInfo = %v, %v", fs, err)
	}

	logDir := filepath.Join(ctd.Dir, "pods", "default_hn_uid1")
	sbCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "hn", Namespace: "default", Uid: "uid1"},
		LogDirectory: logDir,
		Labels:       map[string]string{"test": "cri"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent:    ctd.CgroupRoot + "/kubepods/poduid1",
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}},
		},
	}
	sb, err := c.RunPodSandbox(ctx, sbCfg, "")
	if err != nil {
		t.Fatal(err)
	}
	sbs, err := c.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"test": "cri"}})
	if err != nil || len(sbs) != 1 || sbs[0].Id != sb {
		t.Fatalf("ListPodSandbox = %v, %v", sbs, err)
	}
	id, err := c.CreateContainer(ctx, sb, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "main"},
		Image:    &runtimeapi.ImageSpec{Image: testenv.BusyboxImage},
		Command:  []string{"sh", "-c", "echo hello-$GREETING; exec sleep 3600"},
		Envs:     []*runtimeapi.KeyValue{{Key: "GREETING", Value: "edge"}},
		LogPath:  "main/0.log",
		Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{
			CpuShares: 256, CpuPeriod: 100000, CpuQuota: 50000, MemoryLimitInBytes: 64 << 20,
		}},
	}, sbCfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	cs, err := c.ContainerStatus(ctx, id)
	if err != nil || cs.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("ContainerStatus = %v, %v", cs, err)
	}
	out, _, code, err := c.ExecSync(ctx, id, []string{"cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}, 10*time.Second)
	if err != nil || code != 0 || strings.TrimSpace(string(out)) != "67108864" {
		t.Fatalf("ExecSync(memory limit) = %q, %d, %v", out, code, err)
	}
	_, _, code, err = c.ExecSync(ctx, id, []string{"sh", "-c", "exit 3"}, 10*time.Second)
	if err != nil || code != 3 {
		t.Fatalf("ExecSync(exit 3) = %d, %v; want 3, nil", code, err)
	}
	if _, err := c.ContainerStats(ctx, id); err != nil {
		t.Fatalf("ContainerStats: %v", err)
	}
	waitFor(t, ctx, func() bool {
		data, _ := os.ReadFile(filepath.Join(logDir, "main", "0.log"))
		return strings.Contains(string(data), " stdout F hello-edge")
	}, "container log line")
	if err := c.StopContainer(ctx, id, 1); err != nil {
		t.Fatal(err)
	}
	cs, err = c.ContainerStatus(ctx, id)
	if err != nil || cs.State != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Fatalf("ContainerStatus after stop = %v, %v", cs, err)
	}
	if err := c.RemoveContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ContainerStatus(ctx, id); !errors.Is(err, cri.ErrNotFound) {
		t.Fatalf("ContainerStatus of removed container: %v; want ErrNotFound", err)
	}
	if err := c.StopPodSandbox(ctx, sb); err != nil {
		t.Fatal(err)
	}
	if err := c.RemovePodSandbox(ctx, sb); err != nil {
		t.Fatal(err)
	}
	if err := c.RemovePodSandbox(ctx, sb); err != nil {
		t.Fatalf("second RemovePodSandbox: %v; want nil", err)
	}

	// Pull from a registry on loopback.
	ref := pushBusybox(t)
	if got, err := c.PullImage(ctx, ref, nil, nil); err != nil || !strings.HasPrefix(got, "sha256:") {
		t.Fatalf("PullImage(%s) = %q, %v", ref, got, err)
	}
	if err := c.RemoveImage(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if img, err := c.ImageStatus(ctx, ref); img != nil || err != nil {
		t.Fatalf("ImageStatus after RemoveImage = %v, %v", img, err)
	}
	if _, err := c.PullImage(ctx, "localhost/kubeedge/does-not-exist:1", nil, nil); err == nil || !strings.Contains(err.Error(), "does-not-exist") {
		t.Fatalf("PullImage of a missing image: %v; want an error naming it", err)
	}
}

// pushBusybox serves an in-memory registry on 127.0.0.1 for the test and
// pushes the local busybox image to it.
func pushBusybox(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	srv.Listener.Close()
	srv.Listener = lis
	srv.Start()
	t.Cleanup(srv.Close)
	cache, err := testenv.ImageCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	bb, err := testenv.BuildBusyboxImage(cache)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(testenv.BusyboxImage)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(bb.Path, &tag)
	if err != nil {
		t.Fatal(err)
	}
	ref := lis.Addr().String() + "/test/busybox:pulled"
	dst, err := name.NewTag(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(dst, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

func waitFor(t *testing.T, ctx context.Context, cond func() bool, what string) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}
