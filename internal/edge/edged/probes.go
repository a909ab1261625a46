package edged

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

type probeKind int

const (
	probeLiveness probeKind = iota
	probeReadiness
	probeStartup
)

func (k probeKind) String() string {
	switch k {
	case probeLiveness:
		return "Liveness"
	case probeReadiness:
		return "Readiness"
	default:
		return "Startup"
	}
}

// maxProbeOutput bounds what a probe's output contributes to an event.
const maxProbeOutput = 10 << 10

// probeManager runs one goroutine per (container instance, probe kind) and
// keeps the results the pod worker and the status read. A result change
// wakes the pod's worker. Workers stop when their instance stops running,
// when the pod is torn down, or when edged stops.
type probeManager struct {
	e *Edged

	mu      sync.Mutex
	workers map[probeKey]*probeWorker     // guarded by mu
	results map[string]*probeState        // guarded by mu; container id -> state
	byPod   map[types.UID]map[string]bool // guarded by mu; pod -> container ids probed
	wg      sync.WaitGroup
}

type probeKey struct {
	containerID string
	kind        probeKind
}

// probeState is the current verdict of a container instance's probes.
type probeState struct {
	ready, started            bool
	liveFailed, startupFailed bool
}

type probeWorker struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func newProbeManager(e *Edged) *probeManager {
	return &probeManager{e: e, workers: map[probeKey]*probeWorker{}, results: map[string]*probeState{}, byPod: map[types.UID]map[string]bool{}}
}

func (m *probeManager) state(id string) *probeState {
	s := m.results[id]
	if s == nil {
		s = &probeState{}
		m.results[id] = s
	}
	return s
}

// ready reports whether the instance passes its readiness probe (true
// without one).
func (m *probeManager) ready(id string, c *corev1.Container) bool {
	if c.ReadinessProbe == nil {
		return true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.results[id]
	return s != nil && s.ready
}

// started reports whether the instance passed its startup probe (true
// without one).
func (m *probeManager) started(id string, c *corev1.Container) bool {
	if c.StartupProbe == nil {
		return true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.results[id]
	return s != nil && s.started
}

// failed reports whether the instance's liveness or startup probe crossed
// its failure threshold.
func (m *probeManager) failed(id string, kind probeKind) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.results[id]
	if s == nil {
		return false
	}
	if kind == probeStartup {
		return s.startupFailed
	}
	return s.liveFailed
}

// syncPod starts probe workers for the pod's running containers and stops
// those of instances that no longer run.
func (m *probeManager) syncPod(ctx context.Context, pod *corev1.Pod, rt *podRuntime) {
	sb := rt.latestSandbox()
	host := ""
	if pod.Spec.HostNetwork {
		host = m.e.cfg.NodeIP
		if host == "" {
			host = "127.0.0.1"
		}
	} else if sb != nil {
		host = sb.ip
	}
	live := map[string]bool{}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		inst := rt.latest(c.Name)
		if inst == nil || !inst.running() {
			continue
		}
		live[inst.id] = true
		for _, p := range []struct {
			kind  probeKind
			probe *corev1.Probe
		}{{probeStartup, c.StartupProbe}, {probeLiveness, c.LivenessProbe}, {probeReadiness, c.ReadinessProbe}} {
			if p.probe != nil {
				m.ensure(ctx, pod, c, inst, p.kind, p.probe, host)
			}
		}
	}
	m.mu.Lock()
	var stale []string
	for id := range m.byPod[pod.UID] {
		if !live[id] {
			stale = append(stale, id)
		}
	}
	m.mu.Unlock()
	for _, id := range stale {
		m.forget(id)
	}
}

func (m *probeManager) ensure(ctx context.Context, pod *corev1.Pod, c *corev1.Container, inst *containerInstance, kind probeKind, probe *corev1.Probe, host string) {
	key := probeKey{inst.id, kind}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.workers[key]; ok {
		return
	}
	st := m.state(inst.id)
	if kind == probeStartup && (st.started || st.startupFailed) {
		return
	}
	if kind == probeLiveness && st.liveFailed {
		return
	}
	if m.byPod[pod.UID] == nil {
		m.byPod[pod.UID] = map[string]bool{}
	}
	m.byPod[pod.UID][inst.id] = true
	wctx, cancel := context.WithCancel(ctx)
	pw := &probeWorker{cancel: cancel, done: make(chan struct{})}
	m.workers[key] = pw
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(pw.done)
		m.run(wctx, pod.DeepCopy(), c.DeepCopy(), inst.id, inst.started, kind, probe.DeepCopy(), host)
	}()
}

// forget stops the probes of a container instance and drops its results.
func (m *probeManager) forget(id string) {
	m.mu.Lock()
	var ws []*probeWorker
	for k, w := range m.workers {
		if k.containerID == id {
			ws = append(ws, w)
			delete(m.workers, k)
		}
	}
	delete(m.results, id)
	for _, ids := range m.byPod {
		delete(ids, id)
	}
	m.mu.Unlock()
	for _, w := range ws {
		w.cancel()
		<-w.done
	}
}

// stopPod stops every probe of a pod.
func (m *probeManager) stopPod(uid types.UID) {
	m.mu.Lock()
	ids := make([]string, 0, len(m.byPod[uid]))
	for id := range m.byPod[uid] {
		ids = append(ids, id)
	}
	delete(m.byPod, uid)
	m.mu.Unlock()
	for _, id := range ids {
		m.forget(id)
	}
}

// run probes one container instance until its verdict is final (startup
// passed or failed, liveness failed) or ctx ends.
func (m *probeManager) run(ctx context.Context, pod *corev1.Pod, c *corev1.Container, id string, startedAt time.Time, kind probeKind, p *corev1.Probe, host string) {
	e := m.e
	period := time.Duration(max(p.PeriodSeconds, 1)) * time.Second
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	successNeeded := max(p.SuccessThreshold, 1)
	failureLimit := max(p.FailureThreshold, 1)
	if kind != probeReadiness {
		successNeeded = 1 // liveness and startup must have 1
	}
	if delay := time.Duration(p.InitialDelaySeconds)*time.Second - e.clk.Since(startedAt); delay > 0 {
		if !sleepClock(ctx, e, delay) {
			return
		}
	}
	ticker := e.clk.NewTicker(period)
	defer ticker.Stop()
	var successes, failures int32
	for {
		if kind != probeStartup && !m.startedFor(id, c) {
			// Liveness and readiness wait for the startup probe.
		} else {
			ok, out := e.runProbe(ctx, pod, c, id, p, host, timeout)
			if ctx.Err() != nil {
				return
			}
			if ok {
				successes, failures = successes+1, 0
			} else {
				successes, failures = 0, failures+1
				e.events.pod(pod, containerFieldPath(c, false), corev1.EventTypeWarning, reasonUnhealthy, "%s probe failed: %s", kind, out)
			}
			if final := m.record(pod.UID, id, kind, ok, successes >= successNeeded, failures >= failureLimit); final {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C():
		}
	}
}

func (m *probeManager) startedFor(id string, c *corev1.Container) bool { return m.started(id, c) }

// record applies one probe outcome; it wakes the pod worker when the
// verdict changes and returns true when probing this instance is over.
func (m *probeManager) record(uid types.UID, id string, kind probeKind, ok, passed, failedOut bool) bool {
	m.mu.Lock()
	if _, live := m.workers[probeKey{id, kind}]; !live {
		m.mu.Unlock()
		return true
	}
	st := m.state(id)
	changed, final := false, false
	switch kind {
	case probeReadiness:
		if ok && passed && !st.ready {
			st.ready, changed = true, true
		}
		if !ok && failedOut && st.ready {
			st.ready, changed = false, true
		}
	case probeLiveness:
		if !ok && failedOut {
			st.liveFailed, changed, final = true, true, true
		}
	case probeStartup:
		if ok {
			st.started, changed, final = true, true, true
		} else if failedOut {
			st.startupFailed, changed, final = true, true, true
		}
	}
	if final {
		delete(m.workers, probeKey{id, kind})
	}
	m.mu.Unlock()
	if changed {
		m.e.kickUID(uid)
	}
	return final
}

func sleepClock(ctx context.Context, e *Edged, d time.Duration) bool {
	t := e.clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// runProbe runs one probe and returns whether it passed and its output.
func (e *Edged) runProbe(ctx context.Context, pod *corev1.Pod, c *corev1.Container, id string, p *corev1.Probe, host string, timeout time.Duration) (bool, string) {
	switch {
	case p.Exec != nil:
		out, stderr, code, err := e.rt.ExecSync(ctx, id, p.Exec.Command, timeout)
		if err != nil {
			return false, err.Error()
		}
		if code != 0 {
			return false, fmt.Sprintf("command %q exited with %d: %s", strings.Join(p.Exec.Command, " "), code, truncate(string(out)+string(stderr), maxProbeOutput))
		}
		return true, ""
	case p.HTTPGet != nil:
		err := httpGet(ctx, c, p.HTTPGet, host, timeout)
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	case p.TCPSocket != nil:
		port, err := resolvePort(p.TCPSocket.Port, c)
		if err != nil {
			return false, err.Error()
		}
		h := p.TCPSocket.Host
		if h == "" {
			h = host
		}
		d := net.Dialer{Timeout: timeout}
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(h, strconv.Itoa(port)))
		if err != nil {
			return false, fmt.Sprintf("dial tcp %s: %v", net.JoinHostPort(h, strconv.Itoa(port)), errors.Unwrap(err))
		}
		_ = conn.Close()
		return true, ""
	case p.GRPC != nil:
		return grpcHealth(ctx, p.GRPC, host, timeout)
	}
	return false, "probe has no handler (exec, httpGet, tcpSocket or grpc)"
}

func truncate(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n]
	}
	return s
}

// resolvePort resolves a port number or the name of one of the
// container's ports.
func resolvePort(p intstr.IntOrString, c *corev1.Container) (int, error) {
	if p.Type == intstr.Int {
		if p.IntVal <= 0 || p.IntVal > 65535 {
			return 0, fmt.Errorf("invalid port number %d", p.IntVal)
		}
		return int(p.IntVal), nil
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil && n > 0 && n <= 65535 {
		return n, nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("port %q is not a number and no container port has that name", p.StrVal)
}

// httpGet performs an HTTP(S) GET as the kubelet's prober: 2xx and 3xx
// pass, redirects are not followed, TLS is not verified.
func httpGet(ctx context.Context, c *corev1.Container, g *corev1.HTTPGetAction, host string, timeout time.Duration) error {
	port, err := resolvePort(g.Port, c)
	if err != nil {
		return err
	}
	if g.Host != "" {
		host = g.Host
	}
	scheme := "http"
	if g.Scheme == corev1.URISchemeHTTPS {
		scheme = "https"
	}
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u := &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port))}
	full := u.String() + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, full, nil)
	if err != nil {
		return fmt.Errorf("probe URL %q: %w", full, err)
	}
	req.Header.Set("User-Agent", "kube-probe/1.35")
	for _, h := range g.HTTPHeaders {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	tr := &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // the kubelet's prober does not verify either
	defer tr.CloseIdleConnections()
	client := &http.Client{Timeout: timeout, Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("get %q: %v", full, unwrapURLError(err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxProbeOutput))
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
	}
	_ = body
	return nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// grpcHealth runs a gRPC health check (grpc.health.v1).
func grpcHealth(ctx context.Context, g *corev1.GRPCAction, host string, timeout time.Duration) (bool, string) {
	conn, err := grpc.NewClient(net.JoinHostPort(host, strconv.Itoa(int(g.Port))), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return false, err.Error()
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	svc := ""
	if g.Service != nil {
		svc = *g.Service
	}
	resp, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{Service: svc})
	if err != nil {
		return false, fmt.Sprintf("failed to connect service %q within %s: %v", net.JoinHostPort(host, strconv.Itoa(int(g.Port))), timeout, err)
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		return false, fmt.Sprintf("service unhealthy (responded with %q)", resp.Status)
	}
	return true, ""
}

// runHook runs a postStart or preStop handler.
func (e *Edged) runHook(ctx context.Context, pod *corev1.Pod, c *corev1.Container, id string, h *corev1.LifecycleHandler, timeout time.Duration) error {
	switch {
	case h.Exec != nil:
		out, stderr, code, err := e.rt.ExecSync(ctx, id, h.Exec.Command, timeout)
		if err != nil {
			return err
		}
		if code != 0 {
			return fmt.Errorf("command %q exited with %d: %s", strings.Join(h.Exec.Command, " "), code, truncate(string(out)+string(stderr), maxProbeOutput))
		}
		return nil
	case h.HTTPGet != nil:
		host := h.HTTPGet.Host
		if host == "" {
			rt, err := e.podRuntimeState(ctx, pod.UID)
			if err == nil {
				if sb := rt.latestSandbox(); sb != nil {
					host = sb.ip
				}
			}
			if pod.Spec.HostNetwork || host == "" {
				host = e.cfg.NodeIP
			}
		}
		return httpGet(ctx, c, h.HTTPGet, host, timeout)
	case h.Sleep != nil:
		if !sleepClock(ctx, e, time.Duration(h.Sleep.Seconds)*time.Second) {
			return ctx.Err()
		}
		return nil
	case h.TCPSocket != nil:
		return nil // deprecated and a no-op in the kubelet too
	}
	return errors.New("lifecycle handler has no action")
}
