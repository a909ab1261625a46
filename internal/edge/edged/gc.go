package edged

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// imageRecord is what image GC knows about an image.
type imageRecord struct {
	firstSeen, lastUsed time.Time
	size                uint64
}

// housekeeping removes what belongs to no pod (sandboxes and containers,
// pod directories, cgroups, log directories) once edged has routed every
// stored pod, and then every HousekeepingPeriod; it checks image disk
// usage every ImageGCPeriod.
func (e *Edged) housekeeping(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-e.started:
	}
	e.cleanupOrphans(ctx)
	hk := e.clk.NewTicker(e.cfg.HousekeepingPeriod)
	defer hk.Stop()
	img := e.clk.NewTicker(e.cfg.ImageGCPeriod)
	defer img.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-hk.C():
			e.cleanupOrphans(ctx)
			e.gcDeadContainers(ctx)
		case <-img.C():
			if err := e.gcImages(ctx); err != nil && ctx.Err() == nil {
				e.log.Warn("image garbage collection", "err", err)
			}
		}
	}
}

// cleanupOrphans tears down runtime objects, directories and cgroups of pod
// UIDs that no worker owns (pods deleted while edged was down, leftovers of
// a crash).
func (e *Edged) cleanupOrphans(ctx context.Context) {
	snap, err := e.snapshot(ctx)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("orphan cleanup: list runtime", "err", err)
		}
		return
	}
	orphans := map[types.UID]*podRuntime{}
	for _, sb := range snap.sandboxes {
		uid := types.UID(sb.Labels[labelPodUID])
		if uid == "" || e.hasWorker(uid) {
			continue
		}
		if orphans[uid] == nil {
			orphans[uid] = &podRuntime{uid: uid, name: sb.GetMetadata().GetName(), ns: sb.GetMetadata().GetNamespace()}
		}
		orphans[uid].sandboxes = append(orphans[uid].sandboxes, &sandboxInstance{id: sb.Id, ready: sb.State == runtimeapi.PodSandboxState_SANDBOX_READY})
	}
	for _, c := range snap.containers {
		uid := types.UID(c.Labels[labelPodUID])
		if uid == "" || e.hasWorker(uid) {
			continue
		}
		if orphans[uid] == nil {
			orphans[uid] = &podRuntime{uid: uid}
		}
		orphans[uid].containers = append(orphans[uid].containers, &containerInstance{
			id: c.Id, name: c.GetMetadata().GetName(), state: c.State, annotations: c.Annotations,
		})
	}
	var wg sync.WaitGroup
	for uid, rt := range orphans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.log.Info("removing orphaned pod", "uid", uid, "pod", rt.ns+"/"+rt.name)
			if err := e.teardownOrphan(ctx, rt); err != nil && ctx.Err() == nil {
				e.log.Warn("remove orphaned pod", "uid", uid, "err", err)
			}
		}()
	}
	wg.Wait()
	// Directories and cgroups of pods that have no worker and no runtime
	// objects left.
	dirs, err := e.vols.podUIDsOnDisk()
	if err != nil {
		e.log.Warn("orphan cleanup", "err", err)
	}
	for _, uid := range dirs {
		if !e.hasWorker(uid) && orphans[uid] == nil {
			if err := e.vols.teardown(uid); err != nil {
				e.log.Warn("remove orphaned pod directory", "uid", uid, "err", err)
			}
		}
	}
	for uid := range e.podCgroupUIDs() {
		if !e.hasWorker(uid) {
			if err := e.removePodCgroups(uid); err != nil {
				e.log.Debug("orphaned pod cgroup not removable yet", "uid", uid, "err", err)
			}
		}
	}
	e.cleanupLogDirs()
}

func (e *Edged) teardownOrphan(ctx context.Context, rt *podRuntime) error {
	var wg sync.WaitGroup
	errs := make([]error, len(rt.containers))
	for i, c := range rt.containers {
		if c.state != runtimeapi.ContainerState_CONTAINER_RUNNING {
			continue
		}
		grace := int64(atoiDefault(c.annotations[annotationGracePeriod], 30))
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.killContainer(ctx, nil, c, grace, "")
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, sb := range rt.sandboxes {
		if err := e.rt.StopPodSandbox(ctx, sb.id); err != nil {
			return err
		}
	}
	return e.removePodResources(ctx, rt.uid, rt, "")
}

// cleanupLogDirs removes <podLogs>/<ns>_<name>_<uid> of pods edged does not
// know.
func (e *Edged) cleanupLogDirs() {
	entries, err := os.ReadDir(e.cfg.PodLogsDirectory)
	if err != nil {
		return
	}
	for _, en := range entries {
		i := strings.LastIndexByte(en.Name(), '_')
		if !en.IsDir() || i < 0 {
			continue
		}
		if uid := types.UID(en.Name()[i+1:]); !e.hasWorker(uid) {
			_ = os.RemoveAll(filepath.Join(e.cfg.PodLogsDirectory, en.Name()))
		}
	}
}

// gcContainers removes a pod's dead container instances beyond
// MaxPerPodContainerCount per container (oldest first, never the newest
// instance, which carries the restart count and the last state) and
// sandboxes that are neither the newest nor hold containers.
func (w *podWorker) gcContainers(ctx context.Context, pod *corev1.Pod, rt *podRuntime) {
	e := w.e
	now := e.clk.Now()
	keep := max(e.cfg.MaxPerPodContainerCount, 1)
	byName := map[string][]*containerInstance{}
	for _, c := range rt.containers {
		byName[c.name] = append(byName[c.name], c)
	}
	for _, insts := range byName {
		dead := 0
		for i, c := range insts {
			if !c.exited() {
				continue
			}
			dead++
			if i == 0 || dead <= keep || now.Sub(c.finished) < e.cfg.MinimumGCAge {
				continue
			}
			e.removeDeadContainer(ctx, c)
		}
	}
	latest := rt.latestSandbox()
	for _, sb := range rt.sandboxes {
		if sb == latest || sb.ready {
			continue
		}
		inUse := false
		for _, c := range rt.containers {
			if c.sandboxID == sb.id {
				inUse = true
				break
			}
		}
		if !inUse {
			if err := e.rt.RemovePodSandbox(ctx, sb.id); err != nil {
				e.log.Debug("remove old sandbox", "pod", podFullName(pod), "err", err)
			}
		}
	}
}

func (e *Edged) removeDeadContainer(ctx context.Context, c *containerInstance) {
	if err := e.rt.RemoveContainer(ctx, c.id); err != nil {
		e.log.Debug("remove dead container", "id", c.id, "err", err)
		return
	}
	// containerd keeps the log file; the kubelet removes it with the
	// container.
	if c.logPath != "" {
		_ = os.Remove(c.logPath)
	}
	if p := c.annotations[annotationTermMsgHostPath]; p != "" {
		_ = os.Remove(p)
	}
	e.probes.forget(c.id)
}

// gcDeadContainers enforces MaxContainerCount over the node: the oldest
// dead containers go first, but never a container's newest instance.
func (e *Edged) gcDeadContainers(ctx context.Context) {
	if e.cfg.MaxContainerCount < 0 {
		return
	}
	cs, err := e.rt.ListContainers(ctx, &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_EXITED}})
	if err != nil || len(cs) <= e.cfg.MaxContainerCount {
		return
	}
	all, err := e.rt.ListContainers(ctx, nil)
	if err != nil {
		return
	}
	// Newest instance per (pod, container): kept.
	newest := map[string]*runtimeapi.Container{}
	for _, c := range all {
		k := c.Labels[labelPodUID] + "/" + c.GetMetadata().GetName()
		if n := newest[k]; n == nil || c.CreatedAt > n.CreatedAt {
			newest[k] = c
		}
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].CreatedAt < cs[j].CreatedAt })
	excess := len(cs) - e.cfg.MaxContainerCount
	for _, c := range cs {
		if excess <= 0 {
			break
		}
		if newest[c.Labels[labelPodUID]+"/"+c.GetMetadata().GetName()] == c {
			continue
		}
		st, err := e.rt.ContainerStatus(ctx, c.Id)
		if err != nil {
			continue
		}
		e.removeDeadContainer(ctx, instanceFromStatus(c, st))
		excess--
	}
}

// statImageFs measures the filesystem holding the runtime's images.
func (e *Edged) statImageFs(ctx context.Context) (uint64, uint64, error) {
	fss, err := e.rt.ImageFsInfo(ctx)
	if err != nil {
		return 0, 0, err
	}
	if len(fss) == 0 || fss[0].GetFsId().GetMountpoint() == "" {
		return 0, 0, errors.New("runtime reports no image filesystem")
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(fss[0].GetFsId().GetMountpoint(), &st); err != nil {
		return 0, 0, err
	}
	return st.Blocks * uint64(st.Bsize), st.Bavail * uint64(st.Bsize), nil
}

// gcImages frees image disk space like the kubelet's image GC: above
// ImageGCHighThresholdPercent usage it removes images no container uses
// (running or dead), least recently used first and never younger than
// ImageMinimumGCAge nor the sandbox image, until usage is below
// ImageGCLowThresholdPercent.
func (e *Edged) gcImages(ctx context.Context) error {
	now := e.clk.Now()
	imgs, err := e.rt.ListImages(ctx, nil)
	if err != nil {
		return err
	}
	cs, err := e.rt.ListContainers(ctx, nil)
	if err != nil {
		return err
	}
	inUse := map[string]bool{}
	for _, c := range cs {
		inUse[c.ImageRef] = true
		inUse[c.GetImage().GetImage()] = true
	}
	e.mu.Lock()
	seen := map[string]bool{}
	for _, img := range imgs {
		seen[img.Id] = true
		r, ok := e.imageSeen[img.Id]
		if !ok {
			r = imageRecord{firstSeen: now}
		}
		r.size = img.Size
		if inUse[img.Id] || imageNamed(img, inUse) {
			r.lastUsed = now
		}
		e.imageSeen[img.Id] = r
	}
	for id := range e.imageSeen {
		if !seen[id] {
			delete(e.imageSeen, id)
		}
	}
	records := make(map[string]imageRecord, len(e.imageSeen))
	for k, v := range e.imageSeen {
		records[k] = v
	}
	e.mu.Unlock()
	if e.cfg.ImageGCHighThresholdPercent >= 100 {
		return nil
	}
	capacity, available, err := e.imageFsStats(ctx)
	if err != nil || capacity == 0 {
		return err
	}
	usage := int((capacity - available) * 100 / capacity)
	if usage < e.cfg.ImageGCHighThresholdPercent {
		return nil
	}
	toFree := int64(capacity-available) - int64(capacity)*int64(e.cfg.ImageGCLowThresholdPercent)/100
	e.log.Info("image disk usage above threshold; removing unused images", "usagePercent", usage, "highThreshold", e.cfg.ImageGCHighThresholdPercent, "bytesToFree", toFree)
	type cand struct {
		img *runtimeapi.Image
		rec imageRecord
	}
	var cands []cand
	for _, img := range imgs {
		if inUse[img.Id] || imageNamed(img, inUse) || e.isSandboxImage(img) {
			continue
		}
		rec := records[img.Id]
		if now.Sub(rec.firstSeen) < e.cfg.ImageMinimumGCAge {
			continue
		}
		cands = append(cands, cand{img, rec})
	}
	sort.Slice(cands, func(i, j int) bool {
		a, b := cands[i].rec, cands[j].rec
		if !a.lastUsed.Equal(b.lastUsed) {
			return a.lastUsed.Before(b.lastUsed)
		}
		return a.firstSeen.Before(b.firstSeen)
	})
	var freed int64
	for _, c := range cands {
		if freed >= toFree {
			break
		}
		if err := e.rt.RemoveImage(ctx, c.img.Id); err != nil {
			e.log.Warn("remove image", "image", c.img.RepoTags, "err", err)
			continue
		}
		freed += int64(c.img.Size)
		e.log.Info("removed unused image", "image", c.img.RepoTags, "bytes", c.img.Size)
	}
	if freed < toFree {
		e.events.emit(corev1.ObjectReference{Kind: "Node", Name: e.cfg.NodeName, UID: types.UID(e.cfg.NodeName)}, corev1.EventTypeWarning, "ImageGCFailed",
			fmt.Sprintf("Failed to garbage collect required amount of images. Attempted to free %d bytes, but only found %d bytes eligible to free.", toFree, freed))
	}
	return nil
}

func imageNamed(img *runtimeapi.Image, names map[string]bool) bool {
	for _, t := range img.RepoTags {
		if names[t] {
			return true
		}
	}
	for _, d := range img.RepoDigests {
		if names[d] {
			return true
		}
	}
	return false
}

func (e *Edged) isSandboxImage(img *runtimeapi.Image) bool {
	if img.Id == e.cfg.PodSandboxImage || img.Pinned {
		return true
	}
	for _, t := range img.RepoTags {
		if t == e.cfg.PodSandboxImage {
			return true
		}
	}
	return false
}
