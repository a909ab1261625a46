package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// prepareDir returns the absolute, symlink-free form of dir (the form that
// appears in the processes' arguments, which StopDetached checks), after
// making sure it is empty: a stopped control plane's files are removed.
func prepareDir(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("control plane dir: %w", err)
	}
	dir, err := canonicalDir(dir)
	if err != nil {
		return "", err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("control plane dir: %w", err)
	}
	if len(entries) == 0 {
		return dir, nil
	}
	if _, err := os.Stat(filepath.Join(dir, markerFile)); err != nil {
		return "", fmt.Errorf("%w: %s is not empty and holds no control plane files", ErrDirInUse, dir)
	}
	live, err := livePIDs(dir)
	if err != nil {
		return "", err
	}
	if len(live) > 0 {
		return "", fmt.Errorf("%w: %s has running processes %v: stop them first (StopDetached, `make down`)", ErrDirInUse, dir, live)
	}
	// A crashed run may have left its route behind.
	if err := releaseRecordedRoute(dir); err != nil {
		return "", err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return "", fmt.Errorf("control plane dir: clear old files: %w", err)
		}
	}
	return dir, nil
}

func canonicalDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("control plane dir: %w", err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Errorf("control plane dir: %w", err)
	}
	return real, nil
}

// stopOrder is the order in which StopDetached stops components: clients of
// the apiserver first, etcd last.
func stopOrder() []string {
	return []string{schedulerName, controllerManagerName, apiServerName, etcdName}
}

// StopDetached stops a control plane started with Detach by an earlier
// process: it kills the processes recorded in dir/pids/*.pid, after checking
// via /proc/<pid>/cmdline that each PID still runs the expected binary for
// this dir (a stale PID may have been reused), and removes the blackhole
// route recorded in dir/route. Nothing to stop is not an error. Logs and
// data stay in dir.
func StopDetached(dir string) error {
	dir, err := canonicalDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range stopOrder() {
		pidPath := filepath.Join(dir, "pids", name+".pid")
		data, err := os.ReadFile(pidPath)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", name, err))
			continue
		}
		pid, err := parsePID(data)
		if err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %s: %w", name, pidPath, err))
			continue
		}
		if pidRunning(pid) && pidIsOurs(pid, name, dir) {
			if err := killPID(pid, stopGrace); err != nil {
				errs = append(errs, fmt.Errorf("stop %s: %w", name, err))
				continue
			}
		}
		if err := os.Remove(pidPath); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", name, err))
		}
	}
	if err := releaseRecordedRoute(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// livePIDs returns the components of dir whose recorded PID still runs them.
func livePIDs(dir string) (map[string]int, error) {
	live := map[string]int{}
	for _, name := range stopOrder() {
		data, err := os.ReadFile(filepath.Join(dir, "pids", name+".pid"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read pid of %s: %w", name, err)
		}
		pid, err := parsePID(data)
		if err != nil {
			return nil, fmt.Errorf("read pid of %s: %w", name, err)
		}
		if pidRunning(pid) && pidIsOurs(pid, name, dir) {
			live[name] = pid
		}
	}
	return live, nil
}

// releaseRecordedRoute removes the route recorded in dir/route, if any.
func releaseRecordedRoute(dir string) error {
	path := filepath.Join(dir, routeFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("release route: %w", err)
	}
	p, err := parseRouteFile(data)
	if err != nil {
		return fmt.Errorf("release route: %s: %w", path, err)
	}
	if err := removeBlackhole(p); err != nil {
		return fmt.Errorf("release route: %w", err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("release route: %w", err)
	}
	return nil
}

// RunningDetached reports whether dir holds a detached control plane whose
// recorded processes all still run and whose apiserver answers /readyz.
func RunningDetached(ctx context.Context, dir string) (bool, error) {
	dir, err := canonicalDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	entries, err := os.ReadDir(filepath.Join(dir, "pids"))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("running control plane: %w", err)
	}
	live, err := livePIDs(dir)
	if err != nil {
		return false, err
	}
	if len(live) == 0 || len(live) != len(entries) {
		return false, nil
	}
	cfg, err := restConfigFromKubeconfig(filepath.Join(dir, "admin.kubeconfig"))
	if err != nil {
		return false, err
	}
	cfg.Timeout = 5 * time.Second
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return false, fmt.Errorf("running control plane: %w", err)
	}
	defer httpClient.CloseIdleConnections()
	client, err := kubernetes.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return false, fmt.Errorf("running control plane: %w", err)
	}
	body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil || strings.TrimSpace(string(body)) != "ok" {
		return false, nil
	}
	return true, nil
}
