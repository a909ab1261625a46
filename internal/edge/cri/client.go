package cri

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Runtime is what edged needs from a CRI runtime. Implementations are safe
// for concurrent use. Errors wrap ErrNotFound, ErrUnavailable or ErrTimeout
// where they apply; nil results never come with a nil error except where a
// method says so.
type Runtime interface {
	// Version returns the runtime's name and version.
	Version(ctx context.Context) (*runtimeapi.VersionResponse, error)
	// Status returns the runtime's conditions (RuntimeReady, NetworkReady).
	Status(ctx context.Context) (*runtimeapi.RuntimeStatus, error)

	// RunPodSandbox creates and starts a sandbox and returns its id.
	RunPodSandbox(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, runtimeHandler string) (string, error)
	// StopPodSandbox stops every container of the sandbox and releases its
	// network; stopping a stopped sandbox is not an error.
	StopPodSandbox(ctx context.Context, id string) error
	// RemovePodSandbox removes a sandbox with its containers; removing a
	// missing sandbox is not an error.
	RemovePodSandbox(ctx context.Context, id string) error
	PodSandboxStatus(ctx context.Context, id string) (*runtimeapi.PodSandboxStatus, error)
	ListPodSandbox(ctx context.Context, filter *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error)

	// CreateContainer creates a container in a sandbox and returns its id.
	CreateContainer(ctx context.Context, sandboxID string, cfg *runtimeapi.ContainerConfig, sandboxCfg *runtimeapi.PodSandboxConfig) (string, error)
	StartContainer(ctx context.Context, id string) error
	// StopContainer sends the stop signal, then SIGKILL after timeout
	// seconds; stopping a stopped container is not an error.
	StopContainer(ctx context.Context, id string, timeout int64) error
	// RemoveContainer removes a container; a missing one is not an error.
	RemoveContainer(ctx context.Context, id string) error
	ListContainers(ctx context.Context, filter *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error)
	ContainerStatus(ctx context.Context, id string) (*runtimeapi.ContainerStatus, error)
	UpdateContainerResources(ctx context.Context, id string, res *runtimeapi.LinuxContainerResources) error
	ReopenContainerLog(ctx context.Context, id string) error
	// ExecSync runs cmd in the container and waits at most timeout (0: no
	// limit other than ctx's). A command that ran and failed is not an
	// error: its exit code is returned.
	ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (stdout, stderr []byte, exitCode int32, err error)
	// Exec, Attach and PortForward return the URL of the runtime's
	// streaming server for one session (for kubectl exec/attach/port-forward).
	Exec(ctx context.Context, req *runtimeapi.ExecRequest) (string, error)
	Attach(ctx context.Context, req *runtimeapi.AttachRequest) (string, error)
	PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (string, error)
	ContainerStats(ctx context.Context, id string) (*runtimeapi.ContainerStats, error)
	ListContainerStats(ctx context.Context, filter *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error)

	ListImages(ctx context.Context, filter *runtimeapi.ImageFilter) ([]*runtimeapi.Image, error)
	// ImageStatus returns the image, or nil (and no error) when the runtime
	// does not have it.
	ImageStatus(ctx context.Context, image string) (*runtimeapi.Image, error)
	// PullImage pulls an image and returns its reference (the image id).
	PullImage(ctx context.Context, image string, auth *runtimeapi.AuthConfig, sandboxCfg *runtimeapi.PodSandboxConfig) (string, error)
	// RemoveImage removes an image; a missing one is not an error.
	RemoveImage(ctx context.Context, image string) error
	ImageFsInfo(ctx context.Context) ([]*runtimeapi.FilesystemUsage, error)
}

// Options tunes a Client. Zero values mean the defaults below.
type Options struct {
	// Timeout bounds every call except pulls and ExecSync (which get their
	// own timeout on top). Default 2 min, the kubelet's
	// runtime-request-timeout.
	Timeout time.Duration
	// PullTimeout bounds a pull. Default 10 min.
	PullTimeout time.Duration
	// MaxMsgSize limits received messages. Default 16 MiB, as the kubelet's
	// (a node with many containers lists more than gRPC's 4 MiB default).
	MaxMsgSize int
}

// Client talks CRI over one gRPC connection.
type Client struct {
	endpoint string
	conn     *grpc.ClientConn
	rt       runtimeapi.RuntimeServiceClient
	img      runtimeapi.ImageServiceClient
	opts     Options
}

var _ Runtime = (*Client)(nil)

// Dial returns a client for endpoint (see ParseEndpoint). It does not
// connect: the first call does, and calls fail with ErrUnavailable while
// the runtime is down, so a client outlives runtime restarts.
func Dial(endpoint string, opts Options) (*Client, error) {
	sock, err := ParseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Minute
	}
	if opts.PullTimeout <= 0 {
		opts.PullTimeout = 10 * time.Minute
	}
	if opts.MaxMsgSize <= 0 {
		opts.MaxMsgSize = 16 << 20
	}
	conn, err := grpc.NewClient("unix://"+sock,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(opts.MaxMsgSize)))
	if err != nil {
		return nil, fmt.Errorf("cri: dial %s: %w", endpoint, err)
	}
	return &Client{
		endpoint: endpoint, conn: conn, opts: opts,
		rt: runtimeapi.NewRuntimeServiceClient(conn), img: runtimeapi.NewImageServiceClient(conn),
	}, nil
}

// Endpoint returns the endpoint the client was dialled with.
func (c *Client) Endpoint() string { return c.endpoint }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.opts.Timeout)
}

// Version implements Runtime.
func (c *Client) Version(ctx context.Context) (*runtimeapi.VersionResponse, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	resp, err := c.rt.Version(ctx, &runtimeapi.VersionRequest{})
	return resp, wrap("Version", "", err)
}

// Status implements Runtime.
func (c *Client) Status(ctx context.Context) (*runtimeapi.RuntimeStatus, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	resp, err := c.rt.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		return nil, wrap("Status", "", err)
	}
	return resp.GetStatus(), nil
}

// RunPodSandbox implements Runtime.
func (c *Client) RunPodSandbox(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, runtimeHandler string) (string, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	resp, err := c.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: runtimeHandler})
	if err != nil {
		return "", wrap("RunPodSandbox", sandboxName(cfg), err)
	}
	if resp.PodSandboxId == "" {
		return "", fmt.Errorf("cri: RunPodSandbox %s: runtime returned an empty id", sandboxName(cfg))
	}
	return resp.PodSandboxId, nil
}

func sandboxName(cfg *runtimeapi.PodSandboxConfig) string {
	m := cfg.GetMetadata()
	return fmt.Sprintf("%s/%s (uid %s, attempt %d)", m.GetNamespace(), m.GetName(), m.GetUid(), m.GetAttempt())
}

// StopPodSandbox implements Runtime.
func (c *Client) StopPodSandbox(ctx context.Context, id string) error {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	_, err := c.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
	return ignoreNotFound(wrap("StopPodSandbox", id, err))
}

// RemovePodSandbox implements Runtime.
func (c *Client) RemovePodSandbox(ctx context.Context, id string) error {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	_, err := c.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
	return ignoreNotFound(wrap("RemovePodSandbox", id, err))
}

// PodSandboxStatus implements Runtime.
func (c *Client) PodSandboxStatus(ctx context.Context, id string) (*runtimeapi.PodSandboxStatus, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	resp, err := c.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		return nil, wrap("PodSandboxStatus", id, err)
	}
	if resp.GetStatus() == nil {
		return nil, fmt.Errorf("cri: PodSandboxStatus %s: runtime returned no status", id)
	}
	return resp.GetStatus(), nil
}

// ListPodSandbox implements Runtime.
func (c *Client) ListPodSandbox(ctx context.Context, filter *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	resp, err := c.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: filter})
	if err != nil {
		return nil, wrap("ListPodSandbox", "", err)
	}
	return resp.GetItems(), nil
}

// CreateContainer implements Runtime.
func (c *Client) CreateContainer(ctx context.Context, sandboxID string, cfg *runtimeapi.ContainerConfig, sandboxCfg *runtimeapi.PodSandboxConfig) (string, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	resp, err := c.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: sandboxID, Config: cfg, SandboxConfig: sandboxCfg})
	name := fmt.Sprintf("%s in sandbox %s", cfg.GetMetadata().GetName(), sandboxID)
	if err != nil {
		return "", wrap("CreateContainer", name, err)
	}
	if resp.ContainerId == "" {
		return "", fmt.Errorf("cri: CreateContainer %s: runtime returned an empty id", name)
	}
	return resp.ContainerId, nil
}

// StartContainer implements Runtime.
func (c *Client) StartContainer(ctx context.Context, id string) error {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	_, err := c.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
	return wrap("StartContainer", id, err)
}

// StopContainer implements Runtime. The call's deadline is the grace period
// plus Options.Timeout, so that a long grace period is not cut short.
func (c *Client) StopContainer(ctx context.Context, id string, timeout int64) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout+time.Duration(timeout)*time.Second)
	defer cancel()
	_, err := c.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: timeout})
	return ignoreNotFound(wrap("StopContainer", id, err))
}

// RemoveContainer implements Runtime.
func (c *Client) RemoveContainer(ctx context.Context, id string) error {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	_, err := c.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
	return ignoreNotFound(wrap("RemoveContainer", id, err))
}

// ListContainers implements Runtime.
func (c *Client) ListContainers(ctx context.Context, filter *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	resp, err := c.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: filter})
	if err != nil {
		return nil, wrap("ListContainers", "", err)
	}
	return resp.GetContainers(), nil
}

// ContainerStatus implements Runtime.
func (c *Client) ContainerStatus(ctx context.Context, id string) (*runtimeapi.ContainerStatus, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	resp, err := c.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		return nil, wrap("ContainerStatus", id, err)
	}
	if resp.GetStatus() == nil {
		return nil, fmt.Errorf("cri: ContainerStatus %s: runtime returned no status", id)
	}
	return resp.GetStatus(), nil
}

// UpdateContainerResources implements Runtime.
func (c *Client) UpdateContainerResources(ctx context.Context, id string, res *runtimeapi.LinuxContainerResources) error {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	_, err := c.rt.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id, Linux: res})
	return wrap("UpdateContainerResources", id, err)
}

// ReopenContainerLog implements Runtime.
func (c *Client) ReopenContainerLog(ctx context.Context, id string) error {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	_, err := c.rt.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: id})
	return wrap("ReopenContainerLog", id, err)
}

// ExecSync implements Runtime.
func (c *Client) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) ([]byte, []byte, int32, error) {
	secs := int64(0)
	if timeout > 0 {
		secs = max(int64((timeout+time.Second-1)/time.Second), 1)
		// Leave the runtime its own deadline first, so that a command
		// running too long comes back as the runtime's timeout.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout+c.opts.Timeout)
		defer cancel()
	}
	resp, err := c.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: secs})
	if err != nil {
		return nil, nil, 0, wrap("ExecSync", id, err)
	}
	return resp.Stdout, resp.Stderr, resp.ExitCode, nil
}

// Exec implements Runtime.
func (c *Client) Exec(ctx context.Context, req *runtimeapi.ExecRequest) (string, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	resp, err := c.rt.Exec(ctx, req)
	if err != nil {
		return "", wrap("Exec", req.GetContainerId(), err)
	}
	return resp.Url, nil
}

// Attach implements Runtime.
func (c *Client) Attach(ctx context.Context, req *runtimeapi.AttachRequest) (string, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	resp, err := c.rt.Attach(ctx, req)
	if err != nil {
		return "", wrap("Attach", req.GetContainerId(), err)
	}
	return resp.Url, nil
}

// PortForward implements Runtime.
func (c *Client) PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (string, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	resp, err := c.rt.PortForward(ctx, req)
	if err != nil {
		return "", wrap("PortForward", req.GetPodSandboxId(), err)
	}
	return resp.Url, nil
}

// ContainerStats implements Runtime.
func (c *Client) ContainerStats(ctx context.Context, id string) (*runtimeapi.ContainerStats, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	resp, err := c.rt.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: id})
	if err != nil {
		return nil, wrap("ContainerStats", id, err)
	}
	return resp.GetStats(), nil
}

// ListContainerStats implements Runtime.
func (c *Client) ListContainerStats(ctx context.Context, filter *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	resp, err := c.rt.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{Filter: filter})
	if err != nil {
		return nil, wrap("ListContainerStats", "", err)
	}
	return resp.GetStats(), nil
}

// ListImages implements Runtime.
func (c *Client) ListImages(ctx context.Context, filter *runtimeapi.ImageFilter) ([]*runtimeapi.Image, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	resp, err := c.img.ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: filter})
	if err != nil {
		return nil, wrap("ListImages", "", err)
	}
	return resp.GetImages(), nil
}

// ImageStatus implements Runtime.
func (c *Client) ImageStatus(ctx context.Context, image string) (*runtimeapi.Image, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	resp, err := c.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: image}})
	if err := wrap("ImageStatus", image, err); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		return nil, err
	}
	return resp.GetImage(), nil
}

// PullImage implements Runtime.
func (c *Client) PullImage(ctx context.Context, image string, auth *runtimeapi.AuthConfig, sandboxCfg *runtimeapi.PodSandboxConfig) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.PullTimeout)
	defer cancel()
	resp, err := c.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: image}, Auth: auth, SandboxConfig: sandboxCfg})
	if err != nil {
		return "", wrap("PullImage", image, err)
	}
	return resp.ImageRef, nil
}

// RemoveImage implements Runtime.
func (c *Client) RemoveImage(ctx context.Context, image string) error {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	_, err := c.img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: image}})
	return ignoreNotFound(wrap("RemoveImage", image, err))
}

// ImageFsInfo implements Runtime.
func (c *Client) ImageFsInfo(ctx context.Context) ([]*runtimeapi.FilesystemUsage, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	resp, err := c.img.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
	if err != nil {
		return nil, wrap("ImageFsInfo", "", err)
	}
	return resp.GetImageFilesystems(), nil
}

func ignoreNotFound(err error) error {
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}
