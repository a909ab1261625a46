// Package fakecri is an in-memory cri.Runtime for unit tests of edged and
// its users: sandboxes and containers with CRI state transitions, images,
// and hooks that let a test decide how a container behaves (exit at start,
// exec results, pull failures). It follows containerd's observable
// semantics where edged depends on them: unique (name, attempt) per sandbox,
// stop of a stopped container is a no-op, removing a sandbox removes its
// containers, missing objects give codes.NotFound.
package fakecri

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/edge/cri"
)

// Sandbox is a fake sandbox; tests read it through Runtime.Sandboxes.
type Sandbox struct {
	ID      string
	Config  *runtimeapi.PodSandboxConfig
	State   runtimeapi.PodSandboxState
	Created time.Time
	IP      string
}

// Container is a fake container.
type Container struct {
	ID, SandboxID     string
	Config            *runtimeapi.ContainerConfig
	State             runtimeapi.ContainerState
	Created           time.Time
	Started, Finished time.Time
	ExitCode          int32
	Reason, Message   string
	ImageRef          string
	StopTimeout       int64 // timeout of the last StopContainer call
	Resources         *runtimeapi.LinuxContainerResources
}

// Runtime is the fake. The zero value is not usable; call New.
type Runtime struct {
	clk clock.Clock

	mu         sync.Mutex
	sandboxes  map[string]*Sandbox   // guarded by mu
	containers map[string]*Container // guarded by mu
	images     map[string]*runtimeapi.Image
	calls      []string         // guarded by mu
	stops      map[string]int64 // guarded by mu; container id -> last stop timeout, kept after removal
	nextID     int
	nextIP     int

	// Hooks, set before use; called without mu held.
	// OnStart returns (exitCode, true) to make the container exit at once.
	OnStart func(c *Container) (int32, bool)
	// OnExec answers ExecSync; nil answers exit 0 with no output.
	OnExec func(c *Container, cmd []string) (stdout []byte, exitCode int32, err error)
	// OnPull decides a pull; nil pulls any image successfully.
	OnPull func(image string) error
	// OnRunSandbox can fail RunPodSandbox.
	OnRunSandbox func(cfg *runtimeapi.PodSandboxConfig) error
	// OnCreate can fail CreateContainer.
	OnCreate func(cfg *runtimeapi.ContainerConfig) error
	// Down makes every call fail with Unavailable.
	Down bool
}

var _ cri.Runtime = (*Runtime)(nil)

// New returns an empty fake whose timestamps come from clk.
func New(clk clock.Clock) *Runtime {
	return &Runtime{
		clk:        clk,
		sandboxes:  map[string]*Sandbox{},
		containers: map[string]*Container{},
		images:     map[string]*runtimeapi.Image{},
		stops:      map[string]int64{},
	}
}

// StopTimeout returns the timeout of the last StopContainer call for id,
// also after the container was removed.
func (r *Runtime) StopTimeout(id string) (int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.stops[id]
	return t, ok
}

// AddImage makes image present.
func (r *Runtime) AddImage(name string, size uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addImageLocked(name, size)
}

func (r *Runtime) addImageLocked(name string, size uint64) *runtimeapi.Image {
	if img, ok := r.images[name]; ok {
		return img
	}
	r.nextID++
	img := &runtimeapi.Image{Id: fmt.Sprintf("sha256:%064d", r.nextID), RepoTags: []string{name}, Size: size}
	r.images[name] = img
	return img
}

// Exit makes a running container exit with code, as if its process ended.
func (r *Runtime) Exit(id string, code int32, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok || c.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		return
	}
	r.exitLocked(c, code, reason)
}

func (r *Runtime) exitLocked(c *Container, code int32, reason string) {
	c.State = runtimeapi.ContainerState_CONTAINER_EXITED
	c.ExitCode = code
	c.Finished = r.clk.Now()
	if reason == "" {
		reason = "Error"
		if code == 0 {
			reason = "Completed"
		}
	}
	c.Reason = reason
}

// Sandboxes returns copies of all sandboxes, oldest first.
func (r *Runtime) Sandboxes() []Sandbox {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Sandbox, 0, len(r.sandboxes))
	for _, s := range r.sandboxes {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Containers returns copies of all containers, oldest first.
func (r *Runtime) Containers() []Container {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Container, 0, len(r.containers))
	for _, c := range r.containers {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool { return idNum(out[i].ID) < idNum(out[j].ID) })
	return out
}

func idNum(id string) int {
	n, _ := strconv.Atoi(id[1:])
	return n
}

// Calls returns the names of the calls made so far.
func (r *Runtime) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

func (r *Runtime) enter(op string) error {
	r.mu.Lock()
	r.calls = append(r.calls, op)
	down := r.Down
	r.mu.Unlock()
	if down {
		return &cri.Error{Op: op, Code: codes.Unavailable, Err: status.Error(codes.Unavailable, "connection refused")}
	}
	return nil
}

func notFound(op, id string) error {
	return &cri.Error{Op: op, ID: id, Code: codes.NotFound, Err: status.Errorf(codes.NotFound, "%s not found", id)}
}

func failed(op, id string, err error) error {
	return &cri.Error{Op: op, ID: id, Code: codes.Unknown, Err: status.Error(codes.Unknown, err.Error())}
}

// Version implements cri.Runtime.
func (r *Runtime) Version(context.Context) (*runtimeapi.VersionResponse, error) {
	if err := r.enter("Version"); err != nil {
		return nil, err
	}
	return &runtimeapi.VersionResponse{Version: "0.1.0", RuntimeName: "fake", RuntimeVersion: "1.0", RuntimeApiVersion: "v1"}, nil
}

// Status implements cri.Runtime.
func (r *Runtime) Status(context.Context) (*runtimeapi.RuntimeStatus, error) {
	if err := r.enter("Status"); err != nil {
		return nil, err
	}
	return &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{
		{Type: runtimeapi.RuntimeReady, Status: true}, {Type: runtimeapi.NetworkReady, Status: true},
	}}, nil
}

// RunPodSandbox implements cri.Runtime.
func (r *Runtime) RunPodSandbox(_ context.Context, cfg *runtimeapi.PodSandboxConfig, _ string) (string, error) {
	if err := r.enter("RunPodSandbox"); err != nil {
		return "", err
	}
	if r.OnRunSandbox != nil {
		if err := r.OnRunSandbox(cfg); err != nil {
			return "", failed("RunPodSandbox", cfg.GetMetadata().GetName(), err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m := cfg.GetMetadata()
	for _, s := range r.sandboxes {
		sm := s.Config.GetMetadata()
		if sm.GetUid() == m.GetUid() && sm.GetAttempt() == m.GetAttempt() && sm.GetName() == m.GetName() {
			return "", failed("RunPodSandbox", m.GetName(), fmt.Errorf("name %s_%s_%s_%d is reserved", m.GetName(), m.GetNamespace(), m.GetUid(), m.GetAttempt()))
		}
	}
	r.nextID++
	s := &Sandbox{ID: fmt.Sprintf("s%d", r.nextID), Config: cfg, State: runtimeapi.PodSandboxState_SANDBOX_READY, Created: r.clk.Now()}
	if cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() != runtimeapi.NamespaceMode_NODE {
		r.nextIP++
		s.IP = fmt.Sprintf("10.88.0.%d", r.nextIP%250+2)
	}
	r.sandboxes[s.ID] = s
	return s.ID, nil
}

// StopPodSandbox implements cri.Runtime.
func (r *Runtime) StopPodSandbox(_ context.Context, id string) error {
	if err := r.enter("StopPodSandbox"); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.sandboxes[id]
	if !ok {
		return nil
	}
	for _, c := range r.containers {
		if c.SandboxID == id && c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			r.exitLocked(c, 137, "Error")
		}
	}
	s.State = runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	return nil
}

// RemovePodSandbox implements cri.Runtime.
func (r *Runtime) RemovePodSandbox(_ context.Context, id string) error {
	if err := r.enter("RemovePodSandbox"); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for cid, c := range r.containers {
		if c.SandboxID == id {
			delete(r.containers, cid)
		}
	}
	delete(r.sandboxes, id)
	return nil
}

// PodSandboxStatus implements cri.Runtime.
func (r *Runtime) PodSandboxStatus(_ context.Context, id string) (*runtimeapi.PodSandboxStatus, error) {
	if err := r.enter("PodSandboxStatus"); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.sandboxes[id]
	if !ok {
		return nil, notFound("PodSandboxStatus", id)
	}
	st := &runtimeapi.PodSandboxStatus{
		Id: s.ID, Metadata: s.Config.Metadata, State: s.State, CreatedAt: s.Created.UnixNano(),
		Labels: s.Config.Labels, Annotations: s.Config.Annotations,
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{Options: s.Config.GetLinux().GetSecurityContext().GetNamespaceOptions()}},
	}
	if s.IP != "" {
		st.Network = &runtimeapi.PodSandboxNetworkStatus{Ip: s.IP}
	}
	return st, nil
}

// ListPodSandbox implements cri.Runtime.
func (r *Runtime) ListPodSandbox(_ context.Context, f *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error) {
	if err := r.enter("ListPodSandbox"); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*runtimeapi.PodSandbox
	for _, s := range r.sandboxes {
		if f.GetId() != "" && f.GetId() != s.ID {
			continue
		}
		if f.GetState() != nil && f.GetState().State != s.State {
			continue
		}
		if !matches(f.GetLabelSelector(), s.Config.Labels) {
			continue
		}
		out = append(out, &runtimeapi.PodSandbox{Id: s.ID, Metadata: s.Config.Metadata, State: s.State, CreatedAt: s.Created.UnixNano(), Labels: s.Config.Labels, Annotations: s.Config.Annotations})
	}
	sort.Slice(out, func(i, j int) bool { return idNum(out[i].Id) < idNum(out[j].Id) })
	return out, nil
}

func matches(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// CreateContainer implements cri.Runtime.
func (r *Runtime) CreateContainer(_ context.Context, sandboxID string, cfg *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) (string, error) {
	if err := r.enter("CreateContainer"); err != nil {
		return "", err
	}
	if r.OnCreate != nil {
		if err := r.OnCreate(cfg); err != nil {
			return "", failed("CreateContainer", cfg.GetMetadata().GetName(), err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.sandboxes[sandboxID]
	if !ok {
		return "", notFound("CreateContainer", sandboxID)
	}
	if s.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		return "", failed("CreateContainer", sandboxID, fmt.Errorf("sandbox %s is not ready", sandboxID))
	}
	img, ok := r.images[cfg.GetImage().GetImage()]
	if !ok {
		for _, i := range r.images {
			if i.Id == cfg.GetImage().GetImage() {
				img, ok = i, true
			}
		}
	}
	if !ok {
		return "", notFound("CreateContainer", cfg.GetImage().GetImage())
	}
	for _, c := range r.containers {
		if c.SandboxID == sandboxID && c.Config.Metadata.Name == cfg.Metadata.Name && c.Config.Metadata.Attempt == cfg.Metadata.Attempt {
			return "", failed("CreateContainer", cfg.Metadata.Name, fmt.Errorf("name %s attempt %d is reserved", cfg.Metadata.Name, cfg.Metadata.Attempt))
		}
	}
	r.nextID++
	c := &Container{ID: fmt.Sprintf("c%d", r.nextID), SandboxID: sandboxID, Config: cfg, State: runtimeapi.ContainerState_CONTAINER_CREATED, Created: r.clk.Now(), ImageRef: img.Id}
	r.containers[c.ID] = c
	return c.ID, nil
}

// StartContainer implements cri.Runtime.
func (r *Runtime) StartContainer(_ context.Context, id string) error {
	if err := r.enter("StartContainer"); err != nil {
		return err
	}
	r.mu.Lock()
	c, ok := r.containers[id]
	if !ok {
		r.mu.Unlock()
		return notFound("StartContainer", id)
	}
	if c.State != runtimeapi.ContainerState_CONTAINER_CREATED {
		r.mu.Unlock()
		return failed("StartContainer", id, fmt.Errorf("container is in %s state", c.State))
	}
	c.State = runtimeapi.ContainerState_CONTAINER_RUNNING
	c.Started = r.clk.Now()
	cp := *c
	r.mu.Unlock()
	if r.OnStart != nil {
		if code, exit := r.OnStart(&cp); exit {
			r.Exit(id, code, "")
		}
	}
	return nil
}

// StopContainer implements cri.Runtime.
func (r *Runtime) StopContainer(_ context.Context, id string, timeout int64) error {
	if err := r.enter("StopContainer"); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return nil
	}
	c.StopTimeout = timeout
	r.stops[id] = timeout
	if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
		r.exitLocked(c, 137, "Error")
	}
	if c.State == runtimeapi.ContainerState_CONTAINER_CREATED {
		r.exitLocked(c, 0, "Completed")
	}
	return nil
}

// RemoveContainer implements cri.Runtime.
func (r *Runtime) RemoveContainer(_ context.Context, id string) error {
	if err := r.enter("RemoveContainer"); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.containers[id]; ok && c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
		return failed("RemoveContainer", id, fmt.Errorf("container %s is running", id))
	}
	delete(r.containers, id)
	return nil
}

func (r *Runtime) toAPI(c *Container) *runtimeapi.Container {
	return &runtimeapi.Container{
		Id: c.ID, PodSandboxId: c.SandboxID, Metadata: c.Config.Metadata, Image: c.Config.Image, ImageRef: c.ImageRef,
		State: c.State, CreatedAt: c.Created.UnixNano(), Labels: c.Config.Labels, Annotations: c.Config.Annotations,
	}
}

// ListContainers implements cri.Runtime.
func (r *Runtime) ListContainers(_ context.Context, f *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error) {
	if err := r.enter("ListContainers"); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*runtimeapi.Container
	for _, c := range r.containers {
		if f.GetId() != "" && f.GetId() != c.ID {
			continue
		}
		if f.GetPodSandboxId() != "" && f.GetPodSandboxId() != c.SandboxID {
			continue
		}
		if f.GetState() != nil && f.GetState().State != c.State {
			continue
		}
		if !matches(f.GetLabelSelector(), c.Config.Labels) {
			continue
		}
		out = append(out, r.toAPI(c))
	}
	sort.Slice(out, func(i, j int) bool { return idNum(out[i].Id) < idNum(out[j].Id) })
	return out, nil
}

// ContainerStatus implements cri.Runtime.
func (r *Runtime) ContainerStatus(_ context.Context, id string) (*runtimeapi.ContainerStatus, error) {
	if err := r.enter("ContainerStatus"); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return nil, notFound("ContainerStatus", id)
	}
	st := &runtimeapi.ContainerStatus{
		Id: c.ID, Metadata: c.Config.Metadata, State: c.State, CreatedAt: c.Created.UnixNano(),
		ExitCode: c.ExitCode, Image: c.Config.Image, ImageRef: c.ImageRef, Reason: c.Reason, Message: c.Message,
		Labels: c.Config.Labels, Annotations: c.Config.Annotations, Mounts: c.Config.Mounts, LogPath: c.Config.LogPath,
	}
	if !c.Started.IsZero() {
		st.StartedAt = c.Started.UnixNano()
	}
	if !c.Finished.IsZero() {
		st.FinishedAt = c.Finished.UnixNano()
	}
	return st, nil
}

// UpdateContainerResources implements cri.Runtime.
func (r *Runtime) UpdateContainerResources(_ context.Context, id string, res *runtimeapi.LinuxContainerResources) error {
	if err := r.enter("UpdateContainerResources"); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return notFound("UpdateContainerResources", id)
	}
	c.Resources = res
	return nil
}

// ReopenContainerLog implements cri.Runtime.
func (r *Runtime) ReopenContainerLog(_ context.Context, id string) error {
	return r.enter("ReopenContainerLog")
}

// ExecSync implements cri.Runtime.
func (r *Runtime) ExecSync(_ context.Context, id string, cmd []string, _ time.Duration) ([]byte, []byte, int32, error) {
	if err := r.enter("ExecSync"); err != nil {
		return nil, nil, 0, err
	}
	r.mu.Lock()
	c, ok := r.containers[id]
	var cp Container
	if ok {
		cp = *c
	}
	r.mu.Unlock()
	if !ok {
		return nil, nil, 0, notFound("ExecSync", id)
	}
	if cp.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		return nil, nil, 0, failed("ExecSync", id, fmt.Errorf("container is in %s state", cp.State))
	}
	if r.OnExec == nil {
		return nil, nil, 0, nil
	}
	out, code, err := r.OnExec(&cp, cmd)
	if err != nil {
		return nil, nil, 0, failed("ExecSync", id, err)
	}
	return out, nil, code, nil
}

// Exec implements cri.Runtime.
func (r *Runtime) Exec(_ context.Context, req *runtimeapi.ExecRequest) (string, error) {
	if err := r.enter("Exec"); err != nil {
		return "", err
	}
	return "http://127.0.0.1:0/exec/" + req.ContainerId, nil
}

// Attach implements cri.Runtime.
func (r *Runtime) Attach(_ context.Context, req *runtimeapi.AttachRequest) (string, error) {
	if err := r.enter("Attach"); err != nil {
		return "", err
	}
	return "http://127.0.0.1:0/attach/" + req.ContainerId, nil
}

// PortForward implements cri.Runtime.
func (r *Runtime) PortForward(_ context.Context, req *runtimeapi.PortForwardRequest) (string, error) {
	if err := r.enter("PortForward"); err != nil {
		return "", err
	}
	return "http://127.0.0.1:0/portforward/" + req.PodSandboxId, nil
}

// ContainerStats implements cri.Runtime.
func (r *Runtime) ContainerStats(_ context.Context, id string) (*runtimeapi.ContainerStats, error) {
	if err := r.enter("ContainerStats"); err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStats{Attributes: &runtimeapi.ContainerAttributes{Id: id}}, nil
}

// ListContainerStats implements cri.Runtime.
func (r *Runtime) ListContainerStats(context.Context, *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error) {
	if err := r.enter("ListContainerStats"); err != nil {
		return nil, err
	}
	return nil, nil
}

// ListImages implements cri.Runtime.
func (r *Runtime) ListImages(context.Context, *runtimeapi.ImageFilter) ([]*runtimeapi.Image, error) {
	if err := r.enter("ListImages"); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*runtimeapi.Image, 0, len(r.images))
	for _, img := range r.images {
		out = append(out, img)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return out, nil
}

// ImageStatus implements cri.Runtime.
func (r *Runtime) ImageStatus(_ context.Context, image string) (*runtimeapi.Image, error) {
	if err := r.enter("ImageStatus"); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if img, ok := r.images[image]; ok {
		return img, nil
	}
	for _, img := range r.images {
		if img.Id == image {
			return img, nil
		}
	}
	return nil, nil
}

// PullImage implements cri.Runtime.
func (r *Runtime) PullImage(_ context.Context, image string, _ *runtimeapi.AuthConfig, _ *runtimeapi.PodSandboxConfig) (string, error) {
	if err := r.enter("PullImage"); err != nil {
		return "", err
	}
	if r.OnPull != nil {
		if err := r.OnPull(image); err != nil {
			return "", failed("PullImage", image, err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addImageLocked(image, 1<<20).Id, nil
}

// RemoveImage implements cri.Runtime.
func (r *Runtime) RemoveImage(_ context.Context, image string) error {
	if err := r.enter("RemoveImage"); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, img := range r.images {
		if name == image || img.Id == image {
			delete(r.images, name)
		}
	}
	return nil
}

// ImageFsInfo implements cri.Runtime.
func (r *Runtime) ImageFsInfo(context.Context) ([]*runtimeapi.FilesystemUsage, error) {
	if err := r.enter("ImageFsInfo"); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var used uint64
	for _, img := range r.images {
		used += img.Size
	}
	return []*runtimeapi.FilesystemUsage{{FsId: &runtimeapi.FilesystemIdentifier{Mountpoint: "/fake"}, UsedBytes: &runtimeapi.UInt64Value{Value: used}}}, nil
}
