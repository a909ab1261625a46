// Package config is edgecore's versioned configuration
// (edgecore.config.kubeedge.io/v1alpha2, with KubeEdge's field names).
package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"time"

	"github.com/kubeedge-go/kubeedge/internal/config"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// APIVersion and Kind of the configuration file.
const (
	APIVersion = "edgecore.config.kubeedge.io/v1alpha2"
	Kind       = "EdgeCore"
)

// DefaultProjectID is KubeEdge's default project id in the session URL.
const DefaultProjectID = "e632aba927ea4ac2b575ec1603d56f10"

// EdgeCore is the whole configuration.
type EdgeCore struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Database   Database `json:"database"`
	Modules    Modules  `json:"modules"`
	Memory     Memory   `json:"memory"`
}

// Memory tunes how edgecore gives memory back to the host.
type Memory struct {
	// ReleaseStartupPages pages out, once, ReleaseAfterSeconds after start,
	// the pages of the edgecore executable that start-up mapped (about 7 MiB
	// of RSS); what is still used faults back in from the file.
	ReleaseStartupPages bool  `json:"releaseStartupPages"`
	ReleaseAfterSeconds int32 `json:"releaseAfterSeconds"`
}

// Database is the local SQLite store.
type Database struct {
	DataSource string `json:"dataSource"`
	// EncryptSecrets seals secrets and service-account tokens in the
	// database with AES-256-GCM (key in EncryptionKeyFile, created on first
	// start). Keep the key file off the disk image you ship or back up.
	EncryptSecrets    bool   `json:"encryptSecrets"`
	EncryptionKeyFile string `json:"encryptionKeyFile"`
}

// Modules groups the edge components.
type Modules struct {
	EdgeHub     EdgeHub     `json:"edgeHub"`
	Edged       Edged       `json:"edged"`
	MetaManager MetaManager `json:"metaManager"`
	// Device modules; see devices.go.
	EventBus   EventBus   `json:"eventBus"`
	DeviceTwin DeviceTwin `json:"deviceTwin"`
	DMI        DMI        `json:"dmi"`
	EdgeStream EdgeStream `json:"edgeStream"`
}

// EdgeHub is the connection to the cloud.
type EdgeHub struct {
	Enable bool `json:"enable"`
	// Heartbeat is the keepalive period in seconds (KubeEdge: 15).
	Heartbeat         int    `json:"heartbeat"`
	ProjectID         string `json:"projectID"`
	TLSCAFile         string `json:"tlsCaFile"`
	TLSCertFile       string `json:"tlsCertFile"`
	TLSPrivateKeyFile string `json:"tlsPrivateKeyFile"`
	// Token is used once, to obtain the node certificate.
	Token string `json:"token"`
	// HTTPServer is the cloud's certificate endpoint, https://host:10002.
	HTTPServer string `json:"httpServer"`
	// MessageQPS and MessageBurst limit the uplink (keepalives and acks are exempt).
	MessageQPS   float64  `json:"messageQPS"`
	MessageBurst int      `json:"messageBurst"`
	WebSocket    HubAddr  `json:"websocket"`
	Quic         HubAddr  `json:"quic"`
	Reconnect    Backoff  `json:"reconnect"`
	Rotate       Rotation `json:"rotateCertificates"`
	// MaxFrameBytes bounds one message from the cloud.
	MaxFrameBytes int `json:"maxFrameBytes"`
}

// HubAddr is one transport to the cloud; exactly one must be enabled.
type HubAddr struct {
	Enable bool   `json:"enable"`
	Server string `json:"server"`
}

// Backoff bounds reconnect attempts (milliseconds).
type Backoff struct {
	InitialMillis int `json:"initialMillis"`
	MaxMillis     int `json:"maxMillis"`
}

// Rotation controls certificate rotation.
type Rotation struct {
	Enable bool `json:"enable"`
}

// Edged is the node agent; this part names and describes the node.
type Edged struct {
	Enable           bool              `json:"enable"`
	HostnameOverride string            `json:"hostnameOverride"`
	NodeIP           string            `json:"nodeIP"`
	NodeLabels       map[string]string `json:"nodeLabels,omitempty"`
	// NodeStatusUpdateFrequency is in seconds.
	NodeStatusUpdateFrequency int    `json:"nodeStatusUpdateFrequency"`
	RemoteRuntimeEndpoint     string `json:"remoteRuntimeEndpoint"`
	MaxPods                   int    `json:"maxPods"`
	// The pod runtime (see internal/edge/edged); KubeEdge's names.
	RootDirectory               string   `json:"rootDirectory"`
	PodLogsDirectory            string   `json:"podLogsDirectory"`
	PodSandboxImage             string   `json:"podSandboxImage"`
	CgroupDriver                string   `json:"cgroupDriver"`
	CgroupRoot                  string   `json:"cgroupRoot"`
	ImageGCHighThreshold        int      `json:"imageGCHighThreshold"`
	ImageGCLowThreshold         int      `json:"imageGCLowThreshold"`
	MaximumDeadContainersPerPod int      `json:"maximumDeadContainersPerPod"`
	MaxContainerCount           int      `json:"maxContainerCount"`
	ClusterDNS                  []string `json:"clusterDNS,omitempty"`
	ClusterDomain               string   `json:"clusterDomain"`
	// ConcurrentSandboxStarts bounds pod sandboxes started at once.
	ConcurrentSandboxStarts int `json:"concurrentSandboxStarts"`
}

// MetaManager persists cloud objects.
type MetaManager struct {
	Enable bool `json:"enable"`
	// BatchSize is the most messages persisted in one transaction.
	BatchSize int `json:"batchSize"`
	// MetaServer serves the store to edge apps (KubeEdge's place for it).
	MetaServer MetaServer `json:"metaServer"`
}

// MetaServer is the read-only Kubernetes API for edge apps.
type MetaServer struct {
	Enable bool `json:"enable"`
	// Server is host:port; keep it on loopback (it does not authenticate).
	Server string `json:"server"`
	// ServeSecrets also serves secrets to any local process (off).
	ServeSecrets bool `json:"serveSecrets"`
}

// Default returns a complete configuration for node nodeName.
func Default(nodeName string) *EdgeCore {
	bus, twin, dmi := DefaultDevices()
	return &EdgeCore{
		APIVersion: APIVersion,
		Kind:       Kind,
		Database: Database{DataSource: "/var/lib/kubeedge/edgecore.db",
			EncryptSecrets: true, EncryptionKeyFile: "/etc/kubeedge/keys/store.key"},
		Memory: Memory{ReleaseStartupPages: true, ReleaseAfterSeconds: 30},
		Modules: Modules{
			EdgeHub: EdgeHub{
				Enable:            true,
				Heartbeat:         15,
				ProjectID:         DefaultProjectID,
				TLSCAFile:         "/etc/kubeedge/ca/rootCA.crt",
				TLSCertFile:       "/etc/kubeedge/certs/server.crt",
				TLSPrivateKeyFile: "/etc/kubeedge/certs/server.key",
				HTTPServer:        "https://127.0.0.1:10002",
				MessageQPS:        30,
				MessageBurst:      60,
				WebSocket:         HubAddr{Enable: true, Server: "127.0.0.1:10000"},
				Quic:              HubAddr{Enable: false, Server: "127.0.0.1:10001"},
				Reconnect:         Backoff{InitialMillis: 250, MaxMillis: 30000},
				Rotate:            Rotation{Enable: true},
				MaxFrameBytes:     4 << 20,
			},
			Edged: Edged{
				Enable:                      true,
				HostnameOverride:            nodeName,
				NodeStatusUpdateFrequency:   60,
				RemoteRuntimeEndpoint:       "unix:///run/containerd/containerd.sock",
				MaxPods:                     110,
				RootDirectory:               "/var/lib/edged",
				PodLogsDirectory:            "/var/log/pods",
				PodSandboxImage:             "localhost/kubeedge/pause:3.10",
				CgroupDriver:                "cgroupfs",
				CgroupRoot:                  "/",
				ImageGCHighThreshold:        85,
				ImageGCLowThreshold:         80,
				MaximumDeadContainersPerPod: 1,
				MaxContainerCount:           -1,
				ClusterDomain:               "cluster.local",
				ConcurrentSandboxStarts:     4,
			},
			MetaManager: MetaManager{Enable: true, BatchSize: 256,
				MetaServer: MetaServer{Enable: true, Server: "127.0.0.1:10550"}},
			EventBus:   bus,
			DeviceTwin: twin,
			DMI:        dmi,
			EdgeStream: DefaultEdgeStream(),
		},
	}
}

// Load reads path over the defaults and validates the result.
func Load(path string) (*EdgeCore, error) {
	c := Default("")
	if err := config.Load(path, c); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// MinConfig is the smallest useful file: what a user must set.
type MinConfig struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Database   Database `json:"database"`
	Modules    struct {
		EdgeHub struct {
			Token      string  `json:"token"`
			HTTPServer string  `json:"httpServer"`
			WebSocket  HubAddr `json:"websocket"`
		} `json:"edgeHub"`
		Edged struct {
			HostnameOverride string `json:"hostnameOverride"`
		} `json:"edged"`
	} `json:"modules"`
}

// Min returns the minimal configuration derived from a full one.
func (c *EdgeCore) Min() MinConfig {
	var m MinConfig
	m.APIVersion, m.Kind, m.Database = c.APIVersion, c.Kind, c.Database
	m.Modules.EdgeHub.Token = c.Modules.EdgeHub.Token
	m.Modules.EdgeHub.HTTPServer = c.Modules.EdgeHub.HTTPServer
	m.Modules.EdgeHub.WebSocket = c.Modules.EdgeHub.WebSocket
	m.Modules.Edged.HostnameOverride = c.Modules.Edged.HostnameOverride
	return m
}

// NodeName is the node this edgecore serves.
func (c *EdgeCore) NodeName() string { return c.Modules.Edged.HostnameOverride }

// Validate checks c without side effects; the error names every bad field.
func (c *EdgeCore) Validate() error {
	var e config.Errors
	if c.APIVersion != APIVersion {
		e.Addf("apiVersion", "must be %q, got %q", APIVersion, c.APIVersion)
	}
	if c.Kind != Kind {
		e.Addf("kind", "must be %q, got %q", Kind, c.Kind)
	}
	if c.Database.DataSource == "" {
		e.Addf("database.dataSource", "must not be empty")
	} else if !filepath.IsAbs(c.Database.DataSource) {
		e.Addf("database.dataSource", "%q must be an absolute path", c.Database.DataSource)
	}
	if c.Database.EncryptSecrets && !filepath.IsAbs(c.Database.EncryptionKeyFile) {
		e.Addf("database.encryptionKeyFile", "%q must be an absolute path when encryptSecrets is on", c.Database.EncryptionKeyFile)
	}
	if c.Memory.ReleaseStartupPages {
		e.CheckPositive("memory.releaseAfterSeconds", int64(c.Memory.ReleaseAfterSeconds))
	}
	if err := wire.ValidateNodeName(c.Modules.Edged.HostnameOverride); err != nil {
		e.Addf("modules.edged.hostnameOverride", "%v", err)
	}
	if ip := c.Modules.Edged.NodeIP; ip != "" && net.ParseIP(ip) == nil {
		e.Addf("modules.edged.nodeIP", "%q is not an IP address", ip)
	}
	e.CheckPositive("modules.edged.nodeStatusUpdateFrequency", int64(c.Modules.Edged.NodeStatusUpdateFrequency))
	e.CheckPositive("modules.edged.maxPods", int64(c.Modules.Edged.MaxPods))
	h := c.Modules.EdgeHub
	e.CheckPositive("modules.edgeHub.heartbeat", int64(h.Heartbeat))
	if h.WebSocket.Enable == h.Quic.Enable {
		e.Addf("modules.edgeHub", "enable exactly one of websocket and quic")
	}
	for name, a := range map[string]HubAddr{"websocket": h.WebSocket, "quic": h.Quic} {
		if !a.Enable {
			continue
		}
		if _, _, err := net.SplitHostPort(a.Server); err != nil {
			e.Addf("modules.edgeHub."+name+".server", "%q is not host:port: %v", a.Server, err)
		}
	}
	if u, err := url.Parse(h.HTTPServer); err != nil || u.Scheme != "https" || u.Host == "" {
		e.Addf("modules.edgeHub.httpServer", "%q is not an https:// URL", h.HTTPServer)
	}
	for field, p := range map[string]string{"tlsCaFile": h.TLSCAFile, "tlsCertFile": h.TLSCertFile, "tlsPrivateKeyFile": h.TLSPrivateKeyFile} {
		if p == "" || !filepath.IsAbs(p) {
			e.Addf("modules.edgeHub."+field, "%q must be an absolute path", p)
		}
	}
	if h.ProjectID == "" {
		e.Addf("modules.edgeHub.projectID", "must not be empty")
	}
	if h.MessageQPS <= 0 {
		e.Addf("modules.edgeHub.messageQPS", "must be greater than 0")
	}
	e.CheckPositive("modules.edgeHub.messageBurst", int64(h.MessageBurst))
	e.CheckPositive("modules.edgeHub.reconnect.initialMillis", int64(h.Reconnect.InitialMillis))
	if h.Reconnect.MaxMillis < h.Reconnect.InitialMillis {
		e.Addf("modules.edgeHub.reconnect.maxMillis", "must be at least initialMillis (%d)", h.Reconnect.InitialMillis)
	}
	if h.MaxFrameBytes < 64<<10 {
		e.Addf("modules.edgeHub.maxFrameBytes", "must be at least 65536, got %d", h.MaxFrameBytes)
	}
	e.CheckPositive("modules.metaManager.batchSize", int64(c.Modules.MetaManager.BatchSize))
	if ms := c.Modules.MetaManager.MetaServer; ms.Enable {
		if host, _, err := net.SplitHostPort(ms.Server); err != nil {
			e.Addf("modules.metaManager.metaServer.server", "%q is not host:port: %v", ms.Server, err)
		} else if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			e.Addf("modules.metaManager.metaServer.server", "%q is not a loopback address: the metaserver does not authenticate callers", ms.Server)
		}
	}
	c.Modules.validateDevices(&e)
	c.Modules.EdgeStream.validate(&e)
	return e.Err()
}

// HeartbeatPeriod is Heartbeat as a duration.
func (h EdgeHub) HeartbeatPeriod() time.Duration { return time.Duration(h.Heartbeat) * time.Second }
