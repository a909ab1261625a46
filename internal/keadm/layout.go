package keadm

import (
	"fmt"
	"path/filepath"
)

// Default locations, as in KubeEdge.
const (
	DefaultConfigPath = "/etc/kubeedge/config/edgecore.yaml"
	defaultCertRoot   = "/etc/kubeedge"
	defaultStateRoot  = "/var/lib/kubeedge"
)

// layout is where join puts each file.
type layout struct {
	Config   string
	CAFile   string
	CertFile string
	KeyFile  string
	StoreKey string // the edge database's encryption key
	PodsRoot string // edged's rootDirectory ("" keeps the default)
	PodLogs  string // edged's podLogsDirectory ("" keeps the default)
	Database string
	LogFile  string
	PIDFile  string
}

// newLayout returns the file locations for a data directory (empty means
// the KubeEdge defaults: certificates under /etc/kubeedge, state under
// /var/lib/kubeedge) and a configuration path. Both are made absolute, since
// edgecore runs with / as its working directory.
func newLayout(dataDir, configPath string) (layout, error) {
	certRoot, stateRoot := defaultCertRoot, defaultStateRoot
	podsRoot, podLogs := "", ""
	if dataDir != "" {
		abs, err := filepath.Abs(dataDir)
		if err != nil {
			return layout{}, fmt.Errorf("--data-dir %q: %w", dataDir, err)
		}
		certRoot, stateRoot = abs, abs
		podsRoot, podLogs = filepath.Join(abs, "edged"), filepath.Join(abs, "pod-logs")
	}
	if configPath == "" {
		return layout{}, fmt.Errorf("--config must not be empty")
	}
	cfg, err := filepath.Abs(configPath)
	if err != nil {
		return layout{}, fmt.Errorf("--config %q: %w", configPath, err)
	}
	return layout{
		Config:   cfg,
		CAFile:   filepath.Join(certRoot, "ca", "rootCA.crt"),
		CertFile: filepath.Join(certRoot, "certs", "server.crt"),
		KeyFile:  filepath.Join(certRoot, "certs", "server.key"),
		StoreKey: filepath.Join(certRoot, "keys", "store.key"),
		Database: filepath.Join(stateRoot, "edgecore.db"),
		LogFile:  filepath.Join(stateRoot, "edgecore.log"),
		PIDFile:  filepath.Join(stateRoot, "edgecore.pid"),
		PodsRoot: podsRoot,
		PodLogs:  podLogs,
	}, nil
}
