package kubeletserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	statsapi "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// cpuSample is a cumulative CPU reading, for usage rates.
type cpuSample struct {
	at    time.Time
	nanos uint64
}

// podSample is one running pod's containers with their CRI stats.
type podSample struct {
	sandbox    *runtimeapi.PodSandbox
	containers []containerSample
}

type containerSample struct {
	c     *runtimeapi.Container
	stats *runtimeapi.ContainerStats
}

// sample reads the node and every running container; a CRI failure leaves
// pods empty and is returned next to the node figures.
func (s *Server) sample(ctx context.Context) (now time.Time, cpu uint64, mem nodeMemory, pods []podSample, nodeErr, criErr error) {
	now = s.deps.Clock.Now()
	cpu, err := s.cfg.Host.nodeCPU()
	if err != nil {
		nodeErr = fmt.Errorf("node CPU: %w", err)
	}
	mem, err = s.cfg.Host.nodeMem()
	if err != nil && nodeErr == nil {
		nodeErr = fmt.Errorf("node memory: %w", err)
	}
	pods, criErr = s.samplePods(ctx)
	return now, cpu, mem, pods, nodeErr, criErr
}

func (s *Server) samplePods(ctx context.Context) ([]podSample, error) {
	sbs, err := s.deps.Runtime.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{
		State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}})
	if err != nil {
		return nil, err
	}
	cs, err := s.deps.Runtime.ListContainers(ctx, &runtimeapi.ContainerFilter{
		State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}})
	if err != nil {
		return nil, err
	}
	st, err := s.deps.Runtime.ListContainerStats(ctx, &runtimeapi.ContainerStatsFilter{})
	if err != nil {
		return nil, err
	}
	byID := make(map[string]*runtimeapi.ContainerStats, len(st))
	for _, x := range st {
		byID[x.GetAttributes().GetId()] = x
	}
	bySandbox := map[string]*podSample{}
	var out []*podSample
	for _, sb := range sbs {
		p := &podSample{sandbox: sb}
		bySandbox[sb.Id] = p
		out = append(out, p)
	}
	for _, c := range cs {
		p := bySandbox[c.PodSandboxId]
		x := byID[c.Id]
		if p == nil || x == nil || x.GetCpu() == nil || x.GetMemory() == nil {
			continue // stats appear a moment after start
		}
		p.containers = append(p.containers, containerSample{c: c, stats: x})
	}
	res := make([]podSample, 0, len(out))
	for _, p := range out {
		slices.SortFunc(p.containers, func(a, b containerSample) int {
			return strings.Compare(a.c.GetMetadata().GetName(), b.c.GetMetadata().GetName())
		})
		res = append(res, *p)
	}
	slices.SortFunc(res, func(a, b podSample) int {
		return strings.Compare(podKey(a.sandbox), podKey(b.sandbox))
	})
	return res, nil
}

// podRef names a sandbox's pod from the kubelet labels, falling back to the
// sandbox metadata.
func podRef(sb *runtimeapi.PodSandbox) statsapi.PodReference {
	l, m := sb.GetLabels(), sb.GetMetadata()
	ref := statsapi.PodReference{Namespace: l[LabelPodNamespace], Name: l[LabelPodName], UID: l[LabelPodUID]}
	if ref.Namespace == "" {
		ref.Namespace = m.GetNamespace()
	}
	if ref.Name == "" {
		ref.Name = m.GetName()
	}
	if ref.UID == "" {
		ref.UID = m.GetUid()
	}
	return ref
}

func podKey(sb *runtimeapi.PodSandbox) string {
	r := podRef(sb)
	return r.Namespace + "/" + r.Name + "/" + r.UID
}

func containerName(c *runtimeapi.Container) string {
	if n := c.GetLabels()[LabelContainerName]; n != "" {
		return n
	}
	return c.GetMetadata().GetName()
}

// serveSummary is /stats/summary (statsapi.Summary JSON).
func (s *Server) serveSummary(w http.ResponseWriter, r *http.Request) {
	onlyCPUMem, _ := strconv.ParseBool(r.URL.Query().Get("only_cpu_and_memory"))
	sum, err := s.summary(r.Context(), !onlyCPUMem)
	if err != nil {
		s.httpError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(sum); err != nil {
		s.log.Debug("write summary", "err", err)
	}
}

func (s *Server) summary(ctx context.Context, withFS bool) (*statsapi.Summary, error) {
	now, cpu, mem, pods, nodeErr, criErr := s.sample(ctx)
	if nodeErr != nil {
		return nil, nodeErr
	}
	if criErr != nil {
		return nil, fmt.Errorf("container statistics from the runtime: %w", criErr)
	}
	t := metav1.NewTime(now)
	node := statsapi.NodeStats{NodeName: s.cfg.NodeName}
	if boot, err := s.cfg.Host.bootTime(); err == nil {
		node.StartTime = metav1.NewTime(boot)
	}
	node.CPU = &statsapi.CPUStats{Time: t, UsageCoreNanoSeconds: ptr(cpu), UsageNanoCores: s.nodeRate(now, cpu)}
	avail := uint64(0)
	if mem.total > mem.workingSet {
		avail = mem.total - mem.workingSet
	}
	node.Memory = &statsapi.MemoryStats{Time: t, WorkingSetBytes: ptr(mem.workingSet), UsageBytes: ptr(mem.usage),
		AvailableBytes: ptr(avail), RSSBytes: ptr(mem.rss)}
	if withFS {
		if fs, err := statFS(s.cfg.Host.FsPath); err == nil {
			node.Fs = fsStats(t, fs)
		}
		if infos, err := s.deps.Runtime.ImageFsInfo(ctx); err == nil && len(infos) > 0 {
			fi := infos[0]
			img := &statsapi.FsStats{Time: t, UsedBytes: ptr(fi.GetUsedBytes().GetValue()), InodesUsed: ptr(fi.GetInodesUsed().GetValue())}
			if fs, err := statFS(fi.GetFsId().GetMountpoint()); err == nil {
				img.CapacityBytes, img.AvailableBytes = ptr(fs.capacity), ptr(fs.available)
				img.Inodes, img.InodesFree = ptr(fs.inodes), ptr(fs.inodesFree)
			}
			node.Runtime = &statsapi.RuntimeStats{ImageFs: img}
		}
	}
	sum := &statsapi.Summary{Node: node, Pods: []statsapi.PodStats{}}
	for _, p := range pods {
		ps := statsapi.PodStats{PodRef: podRef(p.sandbox), StartTime: metav1.NewTime(time.Unix(0, p.sandbox.CreatedAt))}
		var podCPU, podMem, podRSS, podUsage uint64
		var podRate *uint64
		for _, c := range p.containers {
			x := c.stats
			cs := statsapi.ContainerStats{Name: containerName(c.c), StartTime: metav1.NewTime(time.Unix(0, c.c.CreatedAt))}
			ct := metav1.NewTime(time.Unix(0, x.GetCpu().GetTimestamp()))
			cs.CPU = &statsapi.CPUStats{Time: ct, UsageCoreNanoSeconds: ptr(x.GetCpu().GetUsageCoreNanoSeconds().GetValue())}
			if v := x.GetCpu().GetUsageNanoCores(); v != nil {
				cs.CPU.UsageNanoCores = ptr(v.GetValue())
				podRate = ptr(valueOr(podRate) + v.GetValue())
			}
			m := x.GetMemory()
			cs.Memory = &statsapi.MemoryStats{Time: metav1.NewTime(time.Unix(0, m.GetTimestamp())),
				WorkingSetBytes: ptr(m.GetWorkingSetBytes().GetValue()), UsageBytes: ptr(m.GetUsageBytes().GetValue()),
				RSSBytes: ptr(m.GetRssBytes().GetValue()), PageFaults: ptr(m.GetPageFaults().GetValue()),
				MajorPageFaults: ptr(m.GetMajorPageFaults().GetValue())}
			if v := m.GetAvailableBytes(); v != nil {
				cs.Memory.AvailableBytes = ptr(v.GetValue())
			}
			if wl := x.GetWritableLayer(); wl != nil && withFS {
				cs.Rootfs = &statsapi.FsStats{Time: metav1.NewTime(time.Unix(0, wl.GetTimestamp())),
					UsedBytes: ptr(wl.GetUsedBytes().GetValue()), InodesUsed: ptr(wl.GetInodesUsed().GetValue())}
			}
			podCPU += x.GetCpu().GetUsageCoreNanoSeconds().GetValue()
			podMem += m.GetWorkingSetBytes().GetValue()
			podRSS += m.GetRssBytes().GetValue()
			podUsage += m.GetUsageBytes().GetValue()
			ps.Containers = append(ps.Containers, cs)
		}
		if len(p.containers) > 0 {
			ps.CPU = &statsapi.CPUStats{Time: t, UsageCoreNanoSeconds: ptr(podCPU), UsageNanoCores: podRate}
			ps.Memory = &statsapi.MemoryStats{Time: t, WorkingSetBytes: ptr(podMem), RSSBytes: ptr(podRSS), UsageBytes: ptr(podUsage)}
		}
		sum.Pods = append(sum.Pods, ps)
	}
	return sum, nil
}

// nodeRate is the node's CPU usage in nanocores since the previous sample
// (nil on the first).
func (s *Server) nodeRate(now time.Time, cpu uint64) *uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := s.lastCPU
	s.lastCPU = cpuSample{at: now, nanos: cpu}
	dt := now.Sub(last.at)
	if last.at.IsZero() || dt <= 0 || cpu < last.nanos {
		return nil
	}
	rate := uint64(float64(cpu-last.nanos) / dt.Seconds())
	return &rate
}

func fsStats(t metav1.Time, fs fsUsage) *statsapi.FsStats {
	inodesUsed := uint64(0)
	if fs.inodes > fs.inodesFree {
		inodesUsed = fs.inodes - fs.inodesFree
	}
	return &statsapi.FsStats{Time: t, CapacityBytes: ptr(fs.capacity), AvailableBytes: ptr(fs.available),
		UsedBytes: ptr(fs.used), Inodes: ptr(fs.inodes), InodesFree: ptr(fs.inodesFree), InodesUsed: ptr(inodesUsed)}
}

func ptr[T any](v T) *T { return &v }

func valueOr(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}

// serveResourceMetrics is /metrics/resource, the Prometheus text the
// kubelet serves and metrics-server v0.7+ scrapes: node and container CPU
// seconds and memory working set, container start times, with millisecond
// timestamps; resource_scrape_error is 1 when the runtime could not be read.
func (s *Server) serveResourceMetrics(w http.ResponseWriter, r *http.Request) {
	now, cpu, mem, pods, nodeErr, criErr := s.sample(r.Context())
	if criErr != nil {
		s.log.Warn("resource metrics: container statistics", "err", criErr)
	}
	if nodeErr != nil {
		s.log.Warn("resource metrics: node statistics", "err", nodeErr)
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if err := writeResourceMetrics(w, now, cpu, mem, pods, nodeErr == nil, criErr != nil); err != nil {
		s.log.Debug("write resource metrics", "err", err)
	}
}

// metricFamily is one family's header; the HELP texts are the kubelet's.
type metricFamily struct {
	name, typ, help string
}

var (
	famContainerCPU   = metricFamily{"container_cpu_usage_seconds_total", "counter", "[STABLE] Cumulative cpu time consumed by the container in core-seconds"}
	famContainerMem   = metricFamily{"container_memory_working_set_bytes", "gauge", "[STABLE] Current working set of the container in bytes"}
	famContainerStart = metricFamily{"container_start_time_seconds", "gauge", "[STABLE] Start time of the container since unix epoch in seconds"}
	famNodeCPU        = metricFamily{"node_cpu_usage_seconds_total", "counter", "[STABLE] Cumulative cpu time consumed by the node in core-seconds"}
	famNodeMem        = metricFamily{"node_memory_working_set_bytes", "gauge", "[STABLE] Current working set of the node in bytes"}
	famPodCPU         = metricFamily{"pod_cpu_usage_seconds_total", "counter", "[STABLE] Cumulative cpu time consumed by the pod in core-seconds"}
	famPodMem         = metricFamily{"pod_memory_working_set_bytes", "gauge", "[STABLE] Current working set of the pod in bytes"}
	famScrapeError    = metricFamily{"resource_scrape_error", "gauge", "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise"}
)

func writeResourceMetrics(w io.Writer, now time.Time, cpu uint64, mem nodeMemory, pods []podSample, nodeOK, scrapeErr bool) error {
	var b strings.Builder
	header := func(f metricFamily) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", f.name, f.help, f.name, f.typ)
	}
	sample := func(name, labels string, v float64, tsMillis int64) {
		b.WriteString(name)
		if labels != "" {
			b.WriteString("{" + labels + "}")
		}
		b.WriteByte(' ')
		b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
		if tsMillis != 0 {
			b.WriteByte(' ')
			b.WriteString(strconv.FormatInt(tsMillis, 10))
		}
		b.WriteByte('\n')
	}
	cLabels := func(p podSample, c containerSample) string {
		ref := podRef(p.sandbox)
		return `container="` + escapeLabel(containerName(c.c)) + `",namespace="` + escapeLabel(ref.Namespace) + `",pod="` + escapeLabel(ref.Name) + `"`
	}
	pLabels := func(p podSample) string {
		ref := podRef(p.sandbox)
		return `namespace="` + escapeLabel(ref.Namespace) + `",pod="` + escapeLabel(ref.Name) + `"`
	}
	ms := func(ns int64) int64 { return ns / int64(time.Millisecond) }
	nowMS := now.UnixMilli()

	header(famContainerCPU)
	for _, p := range pods {
		for _, c := range p.containers {
			x := c.stats.GetCpu()
			sample(famContainerCPU.name, cLabels(p, c), float64(x.GetUsageCoreNanoSeconds().GetValue())/1e9, ms(x.GetTimestamp()))
		}
	}
	header(famContainerMem)
	for _, p := range pods {
		for _, c := range p.containers {
			x := c.stats.GetMemory()
			sample(famContainerMem.name, cLabels(p, c), float64(x.GetWorkingSetBytes().GetValue()), ms(x.GetTimestamp()))
		}
	}
	header(famContainerStart)
	for _, p := range pods {
		for _, c := range p.containers {
			sample(famContainerStart.name, cLabels(p, c), float64(c.c.CreatedAt)/1e9, ms(c.stats.GetCpu().GetTimestamp()))
		}
	}
	if nodeOK {
		header(famNodeCPU)
		sample(famNodeCPU.name, "", float64(cpu)/1e9, nowMS)
		header(famNodeMem)
		sample(famNodeMem.name, "", float64(mem.workingSet), nowMS)
	}
	header(famPodCPU)
	for _, p := range pods {
		if len(p.containers) == 0 {
			continue
		}
		var sum uint64
		var ts int64
		for _, c := range p.containers {
			sum += c.stats.GetCpu().GetUsageCoreNanoSeconds().GetValue()
			ts = max(ts, c.stats.GetCpu().GetTimestamp())
		}
		sample(famPodCPU.name, pLabels(p), float64(sum)/1e9, ms(ts))
	}
	header(famPodMem)
	for _, p := range pods {
		if len(p.containers) == 0 {
			continue
		}
		var sum uint64
		var ts int64
		for _, c := range p.containers {
			sum += c.stats.GetMemory().GetWorkingSetBytes().GetValue()
			ts = max(ts, c.stats.GetMemory().GetTimestamp())
		}
		sample(famPodMem.name, pLabels(p), float64(sum), ms(ts))
	}
	header(famScrapeError)
	v := 0.0
	if scrapeErr {
		v = 1
	}
	sample(famScrapeError.name, "", v, 0)
	_, err := io.WriteString(w, b.String())
	return err
}

// escapeLabel escapes a Prometheus label value (backslash, quote, newline).
func escapeLabel(s string) string {
	if !strings.ContainsAny(s, "\\\"\n") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return r.Replace(s)
}
