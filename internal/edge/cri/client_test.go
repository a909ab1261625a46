package cri

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeServer answers a few runtime calls the way containerd does in the
// cases the client maps: missing objects, slow calls.
type fakeServer struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer
}

func (fakeServer) ContainerStatus(_ context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	return nil, status.Errorf(codes.NotFound, "an error occurred when try to find container %q: not found", req.ContainerId)
}

func (fakeServer) StopContainer(_ context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	return nil, status.Errorf(codes.NotFound, "container %q not found", req.ContainerId)
}

func (fakeServer) StartContainer(_ context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	return nil, status.Errorf(codes.Unknown, "failed to create containerd task: boom")
}

func (fakeServer) ImageStatus(context.Context, *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	return &runtimeapi.ImageStatusResponse{}, nil
}

func (fakeServer) Version(ctx context.Context, _ *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	<-ctx.Done() // slower than any deadline
	return nil, ctx.Err()
}

func startFake(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ke")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "cri.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(srv, fakeServer{})
	runtimeapi.RegisterImageServiceServer(srv, fakeServer{})
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return sock
}

func TestErrorsAreTypedAndNamed(t *testing.T) {
	sock := startFake(t)
	c, err := Dial("unix://"+sock, Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := t.Context()

	_, err = c.ContainerStatus(ctx, "abc")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "ContainerStatus abc") {
		t.Errorf("ContainerStatus of a missing container: %v; want ErrNotFound naming the call and id", err)
	}
	var ce *Error
	if !errors.As(err, &ce) || ce.Code != codes.NotFound {
		t.Errorf("errors.As(*Error) = %v, %+v", errors.As(err, &ce), ce)
	}
	if err := c.StopContainer(ctx, "abc", 1); err != nil {
		t.Errorf("StopContainer of a missing container: %v; want nil (idempotent)", err)
	}
	err = c.StartContainer(ctx, "abc")
	if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "StartContainer abc: failed to create containerd task: boom") {
		t.Errorf("StartContainer: %v", err)
	}
	if img, err := c.ImageStatus(ctx, "localhost/x:1"); img != nil || err != nil {
		t.Errorf("ImageStatus of a missing image = %v, %v; want nil, nil", img, err)
	}
	if _, err := c.Version(ctx); !errors.Is(err, ErrTimeout) {
		t.Errorf("slow Version: %v; want ErrTimeout", err)
	}
}

func TestRuntimeDown(t *testing.T) {
	dir, err := os.MkdirTemp("", "ke")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	c, err := Dial("unix://"+filepath.Join(dir, "none.sock"), Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Status(t.Context()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Status with no runtime: %v; want ErrUnavailable", err)
	}
}
