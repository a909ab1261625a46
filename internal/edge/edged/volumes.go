package edged

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// Volume plugin directory names, as the kubelet's, so that tools that know
// the kubelet's layout find things.
const (
	pluginConfigMap   = "kubernetes.io~configmap"
	pluginSecret      = "kubernetes.io~secret"
	pluginEmptyDir    = "kubernetes.io~empty-dir"
	pluginProjected   = "kubernetes.io~projected"
	pluginDownwardAPI = "kubernetes.io~downward-api"
)

// tokenRetry is how soon a token that could not be fetched (cloud
// unreachable) is asked for again.
const tokenRetry = 30 * time.Second

// mountedVolume is a pod volume ready to be mounted into containers.
type mountedVolume struct {
	path string
	// readOnly: API-data volumes (configMap, secret, projected,
	// downwardAPI) are always mounted read-only, as by the kubelet.
	readOnly bool
}

// volumeError is a volume that could not be set up; its message is the
// kubelet's FailedMount wording.
type volumeError struct {
	volume string
	err    error
}

func (e *volumeError) Error() string {
	return fmt.Sprintf("MountVolume.SetUp failed for volume %q : %s", e.volume, trimConfigErr(e.err))
}

func (e *volumeError) Unwrap() error { return e.err }

// volumeManager lays out pod directories and API-data volumes under
// RootDirectory/pods/<uid>. It is used by pod workers concurrently; each
// pod's directory is only touched by that pod's worker.
type volumeManager struct {
	root     string
	src      objectSource
	tokens   TokenSource
	clk      clock.Clock
	log      *slog.Logger
	canMount bool // root: tmpfs for medium Memory

	mu         sync.Mutex
	tokenState map[string]time.Time // guarded by mu; file key -> refresh time
}

func (vm *volumeManager) podDir(uid types.UID) string {
	return filepath.Join(vm.root, "pods", string(uid))
}

func (vm *volumeManager) volumeDir(uid types.UID, plugin, name string) string {
	return filepath.Join(vm.podDir(uid), "volumes", plugin, name)
}

// setup makes every volume of pod exist with current content and returns
// them by name, and the earliest time a token in them must be refreshed
// (zero if none). An error names the first volume that failed; the others
// are still set up so that a later retry has less to do.
func (vm *volumeManager) setup(ctx context.Context, pod *corev1.Pod, addrs podAddrs) (map[string]mountedVolume, time.Time, error) {
	vols := make(map[string]mountedVolume, len(pod.Spec.Volumes))
	var refresh time.Time
	var firstErr error
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		mv, next, err := vm.setupOne(ctx, pod, v, addrs)
		if err != nil {
			if firstErr == nil {
				firstErr = &volumeError{volume: v.Name, err: err}
			}
			continue
		}
		vols[v.Name] = mv
		if !next.IsZero() && (refresh.IsZero() || next.Before(refresh)) {
			refresh = next
		}
	}
	return vols, refresh, firstErr
}

func (vm *volumeManager) setupOne(ctx context.Context, pod *corev1.Pod, v *corev1.Volume, addrs podAddrs) (mountedVolume, time.Time, error) {
	now := vm.clk.Now()
	switch {
	case v.ConfigMap != nil:
		dir := vm.volumeDir(pod.UID, pluginConfigMap, v.Name)
		payload, err := configMapPayload(vm.src, pod.Namespace, &corev1.ConfigMapProjection{
			LocalObjectReference: v.ConfigMap.LocalObjectReference, Items: v.ConfigMap.Items, Optional: v.ConfigMap.Optional,
		}, modeOr(v.ConfigMap.DefaultMode, 0o644))
		if err != nil {
			return mountedVolume{}, time.Time{}, err
		}
		_, err = writeAtomic(dir, payload, now)
		return mountedVolume{path: dir, readOnly: true}, time.Time{}, err
	case v.Secret != nil:
		dir := vm.volumeDir(pod.UID, pluginSecret, v.Name)
		payload, err := secretPayload(vm.src, pod.Namespace, &corev1.SecretProjection{
			LocalObjectReference: corev1.LocalObjectReference{Name: v.Secret.SecretName}, Items: v.Secret.Items, Optional: v.Secret.Optional,
		}, modeOr(v.Secret.DefaultMode, 0o644))
		if err != nil {
			return mountedVolume{}, time.Time{}, err
		}
		_, err = writeAtomic(dir, payload, now)
		return mountedVolume{path: dir, readOnly: true}, time.Time{}, err
	case v.DownwardAPI != nil:
		dir := vm.volumeDir(pod.UID, pluginDownwardAPI, v.Name)
		payload, err := downwardPayload(pod, addrs, v.DownwardAPI.Items, modeOr(v.DownwardAPI.DefaultMode, 0o644))
		if err != nil {
			return mountedVolume{}, time.Time{}, err
		}
		_, err = writeAtomic(dir, payload, now)
		return mountedVolume{path: dir, readOnly: true}, time.Time{}, err
	case v.Projected != nil:
		return vm.setupProjected(ctx, pod, v, addrs)
	case v.EmptyDir != nil:
		dir := vm.volumeDir(pod.UID, pluginEmptyDir, v.Name)
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return mountedVolume{}, time.Time{}, err
		}
		// 0777 like the kubelet: containers may run as any user.
		if err := os.Chmod(dir, 0o777); err != nil {
			return mountedVolume{}, time.Time{}, err
		}
		if v.EmptyDir.Medium == corev1.StorageMediumMemory {
			if err := vm.mountTmpfs(dir, v.EmptyDir); err != nil {
				return mountedVolume{}, time.Time{}, err
			}
		} else if v.EmptyDir.Medium != corev1.StorageMediumDefault {
			return mountedVolume{}, time.Time{}, configErr("emptyDir medium %q is not supported (use \"\" or Memory)", v.EmptyDir.Medium)
		}
		return mountedVolume{path: dir}, time.Time{}, nil
	case v.HostPath != nil:
		if err := checkHostPath(v.HostPath); err != nil {
			return mountedVolume{}, time.Time{}, err
		}
		return mountedVolume{path: v.HostPath.Path}, time.Time{}, nil
	}
	return mountedVolume{}, time.Time{}, configErr("volume type %s is not supported by edged (supported: configMap, secret, emptyDir, hostPath, projected, downwardAPI)", volumeType(v))
}

// volumeType names the source set in v, for messages.
func volumeType(v *corev1.Volume) string {
	data, err := json.Marshal(v.VolumeSource)
	if err != nil {
		return "unknown"
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(data, &m) != nil || len(m) == 0 {
		return "(none)"
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, "+")
}

func modeOr(m *int32, def os.FileMode) os.FileMode {
	if m == nil {
		return def
	}
	return os.FileMode(*m) & 0o777
}

func configMapPayload(src objectSource, ns string, p *corev1.ConfigMapProjection, defMode os.FileMode) (map[string]fileEntry, error) {
	optional := p.Optional != nil && *p.Optional
	cm, err := src.configMap(ns, p.Name)
	if err != nil {
		if isNotFound(err) {
			if optional {
				return map[string]fileEntry{}, nil
			}
			return nil, fmt.Errorf("configmap %q not found", p.Name)
		}
		return nil, err
	}
	all := map[string][]byte{}
	for k, v := range cm.Data {
		all[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		all[k] = v
	}
	return keyPayload(all, p.Items, defMode, optional, "configmap", p.Name)
}

func secretPayload(src objectSource, ns string, p *corev1.SecretProjection, defMode os.FileMode) (map[string]fileEntry, error) {
	optional := p.Optional != nil && *p.Optional
	s, err := src.secret(ns, p.Name)
	if err != nil {
		if isNotFound(err) {
			if optional {
				return map[string]fileEntry{}, nil
			}
			return nil, fmt.Errorf("secret %q not found", p.Name)
		}
		return nil, err
	}
	all := map[string][]byte{}
	for k, v := range s.Data {
		all[k] = v
	}
	for k, v := range s.StringData {
		all[k] = []byte(v)
	}
	return keyPayload(all, p.Items, defMode, optional, "secret", p.Name)
}

// keyPayload maps keys to files: all keys by name, or only items (key ->
// path, with per-item mode).
func keyPayload(all map[string][]byte, items []corev1.KeyToPath, defMode os.FileMode, optional bool, typ, name string) (map[string]fileEntry, error) {
	out := map[string]fileEntry{}
	if len(items) == 0 {
		for k, v := range all {
			out[k] = fileEntry{data: v, mode: defMode}
		}
		return out, nil
	}
	for _, it := range items {
		v, ok := all[it.Key]
		if !ok {
			if optional {
				continue
			}
			return nil, configErr("%s %q references non-existent key %q", typ, name, it.Key)
		}
		out[it.Path] = fileEntry{data: v, mode: modeOr(it.Mode, defMode)}
	}
	return out, nil
}

func downwardPayload(pod *corev1.Pod, addrs podAddrs, items []corev1.DownwardAPIVolumeFile, defMode os.FileMode) (map[string]fileEntry, error) {
	out := map[string]fileEntry{}
	for _, it := range items {
		var v string
		var err error
		switch {
		case it.FieldRef != nil:
			v, err = podFieldValue(pod, addrs, it.FieldRef.FieldPath)
			// The file form of labels/annotations has no trailing newline.
			v = strings.TrimSuffix(v, "\n")
		case it.ResourceFieldRef != nil:
			c := containerByName(pod, it.ResourceFieldRef.ContainerName)
			if c == nil {
				return nil, configErr("downwardAPI item %q: no container %q", it.Path, it.ResourceFieldRef.ContainerName)
			}
			v, err = resourceFieldValue(pod, c, it.ResourceFieldRef)
		default:
			return nil, configErr("downwardAPI item %q has neither fieldRef nor resourceFieldRef", it.Path)
		}
		if err != nil {
			return nil, err
		}
		out[it.Path] = fileEntry{data: []byte(v), mode: modeOr(it.Mode, defMode)}
	}
	return out, nil
}

func containerByName(pod *corev1.Pod, name string) *corev1.Container {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i]
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

// setupProjected merges the sources of a projected volume into one atomic
// directory; service-account tokens are fetched from the TokenSource and
// rewritten at 80% of their lifetime, and kept as they are when a refresh
// fails (the cloud is unreachable).
func (vm *volumeManager) setupProjected(ctx context.Context, pod *corev1.Pod, v *corev1.Volume, addrs podAddrs) (mountedVolume, time.Time, error) {
	dir := vm.volumeDir(pod.UID, pluginProjected, v.Name)
	defMode := modeOr(v.Projected.DefaultMode, 0o644)
	payload := map[string]fileEntry{}
	var refresh time.Time
	merge := func(m map[string]fileEntry) {
		for k, f := range m {
			payload[k] = f
		}
	}
	for _, s := range v.Projected.Sources {
		switch {
		case s.ConfigMap != nil:
			m, err := configMapPayload(vm.src, pod.Namespace, s.ConfigMap, defMode)
			if err != nil {
				return mountedVolume{}, time.Time{}, err
			}
			merge(m)
		case s.Secret != nil:
			m, err := secretPayload(vm.src, pod.Namespace, s.Secret, defMode)
			if err != nil {
				return mountedVolume{}, time.Time{}, err
			}
			merge(m)
		case s.DownwardAPI != nil:
			m, err := downwardPayload(pod, addrs, s.DownwardAPI.Items, defMode)
			if err != nil {
				return mountedVolume{}, time.Time{}, err
			}
			merge(m)
		case s.ServiceAccountToken != nil:
			tok, next, err := vm.token(ctx, pod, dir, s.ServiceAccountToken)
			if err != nil {
				return mountedVolume{}, time.Time{}, err
			}
			payload[s.ServiceAccountToken.Path] = fileEntry{data: tok, mode: defMode}
			if refresh.IsZero() || next.Before(refresh) {
				refresh = next
			}
		case s.ClusterTrustBundle != nil, s.PodCertificate != nil:
			return mountedVolume{}, time.Time{}, configErr("projected source clusterTrustBundle/podCertificate is not supported by edged")
		}
	}
	_, err := writeAtomic(dir, payload, vm.clk.Now())
	return mountedVolume{path: dir, readOnly: true}, refresh, err
}

// token returns the token file's content and when to refresh it.
func (vm *volumeManager) token(ctx context.Context, pod *corev1.Pod, dir string, p *corev1.ServiceAccountTokenProjection) ([]byte, time.Time, error) {
	now := vm.clk.Now()
	key := dir + "\x00" + p.Path
	existing, have := readCurrent(dir, p.Path)
	vm.mu.Lock()
	due, known := vm.tokenState[key]
	vm.mu.Unlock()
	if have && !known {
		// After a restart: derive the refresh time from the token itself.
		due = refreshTime(existing, fileMTime(filepath.Join(dir, dataDirName, p.Path)), p)
	}
	if have && now.Before(due) {
		vm.setTokenState(key, due)
		return existing, due, nil
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	expSecs := int64(3600)
	if p.ExpirationSeconds != nil {
		expSecs = *p.ExpirationSeconds
	}
	var audiences []string
	if p.Audience != "" {
		audiences = []string{p.Audience}
	}
	if vm.tokens == nil {
		if have {
			return existing, now.Add(tokenRetry), nil
		}
		return nil, time.Time{}, errors.New("service account token: this edge node has no token source configured")
	}
	tok, exp, err := vm.tokens.Token(ctx, pod, sa, audiences, expSecs)
	if err != nil {
		if have {
			vm.log.Warn("service account token refresh failed; keeping the current token", "pod", podFullName(pod), "err", err)
			vm.setTokenState(key, now.Add(tokenRetry))
			return existing, now.Add(tokenRetry), nil
		}
		return nil, time.Time{}, fmt.Errorf("service account token for %q: %w", sa, err)
	}
	if !exp.After(now) {
		exp = now.Add(time.Duration(expSecs) * time.Second)
	}
	next := now.Add(exp.Sub(now) * 8 / 10)
	vm.setTokenState(key, next)
	return []byte(tok), next, nil
}

func (vm *volumeManager) setTokenState(key string, due time.Time) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.tokenState == nil {
		vm.tokenState = map[string]time.Time{}
	}
	vm.tokenState[key] = due
}

func (vm *volumeManager) forgetTokens(uid types.UID) {
	prefix := vm.podDir(uid) + string(filepath.Separator)
	vm.mu.Lock()
	defer vm.mu.Unlock()
	for k := range vm.tokenState {
		if strings.HasPrefix(k, prefix) {
			delete(vm.tokenState, k)
		}
	}
}

func fileMTime(p string) time.Time {
	st, err := os.Stat(p)
	if err != nil {
		return time.Time{}
	}
	return st.ModTime()
}

// refreshTime is 80% into a token's life: from its JWT iat/exp claims, or
// from the file's age and the requested lifetime when the token is opaque.
func refreshTime(tok []byte, written time.Time, p *corev1.ServiceAccountTokenProjection) time.Time {
	if iat, exp, ok := jwtTimes(string(tok)); ok && exp.After(iat) {
		return iat.Add(exp.Sub(iat) * 8 / 10)
	}
	secs := int64(3600)
	if p.ExpirationSeconds != nil {
		secs = *p.ExpirationSeconds
	}
	return written.Add(time.Duration(secs) * time.Second * 8 / 10)
}

// jwtTimes reads the iat (or nbf) and exp claims of a JWT without checking
// its signature (edged only needs to know when to refresh it).
func jwtTimes(tok string) (iat, exp time.Time, ok bool) {
	parts := strings.Split(strings.TrimSpace(tok), ".")
	if len(parts) != 3 {
		return time.Time{}, time.Time{}, false
	}
	data, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, time.Time{}, false
	}
	var claims struct {
		Iat *json.Number `json:"iat"`
		Nbf *json.Number `json:"nbf"`
		Exp *json.Number `json:"exp"`
	}
	if err := json.Unmarshal(data, &claims); err != nil || claims.Exp == nil {
		return time.Time{}, time.Time{}, false
	}
	start := claims.Iat
	if start == nil {
		start = claims.Nbf
	}
	if start == nil {
		return time.Time{}, time.Time{}, false
	}
	s, err1 := start.Int64()
	e, err2 := claims.Exp.Int64()
	if err1 != nil || err2 != nil || s < 0 || e < 0 || s > 1<<40 || e > 1<<40 {
		return time.Time{}, time.Time{}, false
	}
	return time.Unix(s, 0), time.Unix(e, 0), true
}

// checkHostPath applies the hostPath type checks the kubelet does,
// creating what the *OrCreate types ask for.
func checkHostPath(hp *corev1.HostPathVolumeSource) error {
	p := hp.Path
	if !filepath.IsAbs(p) {
		return configErr("hostPath %q is not absolute", p)
	}
	typ := corev1.HostPathUnset
	if hp.Type != nil {
		typ = *hp.Type
	}
	st, err := os.Stat(p)
	exists := err == nil
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("hostPath %q: %w", p, err)
	}
	mode := os.FileMode(0)
	if exists {
		mode = st.Mode()
	}
	switch typ {
	case corev1.HostPathUnset:
		return nil
	case corev1.HostPathDirectoryOrCreate:
		if !exists {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return fmt.Errorf("hostPath %q: create directory: %w", p, err)
			}
			return nil
		}
		if !mode.IsDir() {
			return configErr("hostPath type check failed: %s is not a directory", p)
		}
	case corev1.HostPathDirectory:
		if !exists || !mode.IsDir() {
			return configErr("hostPath type check failed: %s is not a directory", p)
		}
	case corev1.HostPathFileOrCreate:
		if !exists {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return fmt.Errorf("hostPath %q: %w", p, err)
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return fmt.Errorf("hostPath %q: create file: %w", p, err)
			}
			return f.Close()
		}
		if !mode.IsRegular() {
			return configErr("hostPath type check failed: %s is not a file", p)
		}
	case corev1.HostPathFile:
		if !exists || !mode.IsRegular() {
			return configErr("hostPath type check failed: %s is not a file", p)
		}
	case corev1.HostPathSocket:
		if !exists || mode&os.ModeSocket == 0 {
			return configErr("hostPath type check failed: %s is not a socket file", p)
		}
	case corev1.HostPathCharDev:
		if !exists || mode&os.ModeCharDevice == 0 {
			return configErr("hostPath type check failed: %s is not a character device", p)
		}
	case corev1.HostPathBlockDev:
		if !exists || mode&os.ModeDevice == 0 || mode&os.ModeCharDevice != 0 {
			return configErr("hostPath type check failed: %s is not a block device", p)
		}
	default:
		return configErr("hostPath type %q is not known", typ)
	}
	return nil
}

// mountTmpfs mounts a tmpfs on dir unless one is there already (edged
// restarted without a reboot). Without root it is a plain directory.
func (vm *volumeManager) mountTmpfs(dir string, ed *corev1.EmptyDirVolumeSource) error {
	if !vm.canMount {
		return nil
	}
	if isMountPoint(dir) {
		return nil
	}
	opts := "mode=0777"
	if ed.SizeLimit != nil && !ed.SizeLimit.IsZero() {
		opts += ",size=" + strconv.FormatInt(ed.SizeLimit.Value(), 10)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	return nil
}

// mountPointsUnder lists mount points at or below dir, deepest first.
func mountPointsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeOctal(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

func isMountPoint(dir string) bool {
	for _, mp := range mountPointsUnder(dir) {
		if mp == dir {
			return true
		}
	}
	return false
}

func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// teardown unmounts what edged mounted under the pod's directory and
// removes it.
func (vm *volumeManager) teardown(uid types.UID) error {
	dir := vm.podDir(uid)
	for _, mp := range mountPointsUnder(dir) {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("unmount %s: %w", mp, err)
		}
	}
	vm.forgetTokens(uid)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove pod dir: %w", err)
	}
	return nil
}

// podUIDsOnDisk lists the pod directories.
func (vm *volumeManager) podUIDsOnDisk() ([]types.UID, error) {
	entries, err := os.ReadDir(filepath.Join(vm.root, "pods"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list pod dirs: %w", err)
	}
	out := make([]types.UID, 0, len(entries))
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, types.UID(e.Name()))
		}
	}
	return out, nil
}
