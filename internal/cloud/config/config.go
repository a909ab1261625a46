// Package config is cloudcore's versioned configuration
// (cloudcore.config.kubeedge.io/v1alpha2, with KubeEdge's field names).
package config

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/kubeedge-go/kubeedge/internal/config"
)

// APIVersion and Kind of the configuration file.
const (
	APIVersion = "cloudcore.config.kubeedge.io/v1alpha2"
	Kind       = "CloudCore"
)

// CloudCore is the whole configuration.
type CloudCore struct {
	APIVersion    string        `json:"apiVersion"`
	Kind          string        `json:"kind"`
	KubeAPIConfig KubeAPIConfig `json:"kubeAPIConfig"`
	Modules       Modules       `json:"modules"`
}

// KubeAPIConfig says how to reach the Kubernetes API. An empty KubeConfig
// means in-cluster configuration.
type KubeAPIConfig struct {
	KubeConfig string  `json:"kubeConfig"`
	Master     string  `json:"master,omitempty"`
	QPS        float32 `json:"qps"`
	Burst      int     `json:"burst"`
}

// Modules groups the cloud components.
type Modules struct {
	CloudHub       CloudHub       `json:"cloudHub"`
	EdgeController EdgeController `json:"edgeController"`
	SyncController SyncController `json:"syncController"`
	// DeviceController is in devices.go.
	DeviceController DeviceController `json:"deviceController"`
	CloudStream      CloudStream      `json:"cloudStream"`
}

// CloudHub is the edge-facing server.
type CloudHub struct {
	// AdvertiseAddress are the IPs edges use; they go into the server certificate.
	AdvertiseAddress []string `json:"advertiseAddress"`
	DNSNames         []string `json:"dnsNames"`
	// KeepaliveInterval is how long (seconds) a silent session lives.
	KeepaliveInterval int `json:"keepaliveInterval"`
	// TokenRefreshDuration is in hours; tokens expire after twice this.
	TokenRefreshDuration int `json:"tokenRefreshDuration"`
	// EdgeCertificateValidityDays for node certificates.
	EdgeCertificateValidityDays int      `json:"edgeCertificateValidityDays"`
	MaxFrameBytes               int      `json:"maxFrameBytes"`
	NodeLimit                   int      `json:"nodeLimit"`
	WebSocket                   Listener `json:"websocket"`
	Quic                        Listener `json:"quic"`
	HTTPS                       Listener `json:"https"`
	// Namespace holds the CA, server certificate and token secrets.
	Namespace string `json:"namespace"`
}

// Listener is one listening socket.
type Listener struct {
	Enable  bool   `json:"enable"`
	Address string `json:"address"`
	Port    int    `json:"port"`
}

// HostPort is the listener's address for net.Listen.
func (l Listener) HostPort() string { return net.JoinHostPort(l.Address, strconv.Itoa(l.Port)) }

// EdgeController sends each node its objects and takes node state upstream.
type EdgeController struct {
	Enable bool `json:"enable"`
	// Window is the number of unacknowledged messages per node.
	Window int `json:"window"`
	// RetryInitialSeconds and RetryMaxSeconds bound the retransmit back-off.
	RetryInitialSeconds int `json:"retryInitialSeconds"`
	RetryMaxSeconds     int `json:"retryMaxSeconds"`
	Workers             int `json:"workers"`
	// UpstreamWorkers bound the API server calls made for pod reports from
	// edges (status, final deletes, events, tokens) at once.
	UpstreamWorkers int `json:"upstreamWorkers"`
	// PodEviction decides what happens to pods of an unreachable edge node.
	PodEviction PodEviction `json:"podEviction"`
	// NodeLeaseDurationSeconds is written into each edge node's Lease.
	NodeLeaseDurationSeconds int `json:"nodeLeaseDurationSeconds"`
	// NodeStatusResyncSeconds forces a node status write at least this often.
	NodeStatusResyncSeconds int `json:"nodeStatusResyncSeconds"`
}

// PodEviction: by default pods stay bound to an edge node that lost its
// link (they keep running there); see internal/cloud/autonomy.
type PodEviction struct {
	// KeepPodsOnUnreachableNodes rewrites the NoExecute tolerations for the
	// unreachable and not-ready taints of pods on edge nodes to
	// TolerationSeconds. A pod opts out with the annotation
	// kubeedge.io/allow-eviction: "true".
	KeepPodsOnUnreachableNodes bool `json:"keepPodsOnUnreachableNodes"`
	// TolerationSeconds is the value written; absent means forever.
	TolerationSeconds *int64 `json:"tolerationSeconds,omitempty"`
}

// SyncController persists acknowledgements in ObjectSync records.
type SyncController struct {
	Enable  bool `json:"enable"`
	Workers int  `json:"workers"`
	// InstallCRDs installs the reliablesyncs CRDs at start when missing.
	InstallCRDs bool `json:"installCRDs"`
}

// Default returns a complete configuration.
func Default() *CloudCore {
	return &CloudCore{
		APIVersion: APIVersion,
		Kind:       Kind,
		KubeAPIConfig: KubeAPIConfig{
			KubeConfig: "/root/.kube/config",
			QPS:        200,
			Burst:      400,
		},
		Modules: Modules{
			CloudHub: CloudHub{
				AdvertiseAddress:            []string{"127.0.0.1"},
				DNSNames:                    []string{"localhost"},
				KeepaliveInterval:           30,
				TokenRefreshDuration:        12,
				EdgeCertificateValidityDays: 365,
				MaxFrameBytes:               4 << 20,
				NodeLimit:                   10000,
				WebSocket:                   Listener{Enable: true, Address: "0.0.0.0", Port: 10000},
				Quic:                        Listener{Enable: true, Address: "0.0.0.0", Port: 10001},
				HTTPS:                       Listener{Enable: true, Address: "0.0.0.0", Port: 10002},
				Namespace:                   "kubeedge",
			},
			EdgeController: EdgeController{
				Enable: true, Window: 64, RetryInitialSeconds: 5, RetryMaxSeconds: 60, Workers: 4, UpstreamWorkers: 16,
				PodEviction:              PodEviction{KeepPodsOnUnreachableNodes: true},
				NodeLeaseDurationSeconds: 40, NodeStatusResyncSeconds: 60,
			},
			SyncController:   SyncController{Enable: true, Workers: 4, InstallCRDs: true},
			DeviceController: DefaultDeviceController(),
			CloudStream:      DefaultCloudStream(),
		},
	}
}

// Load reads path over the defaults and validates the result.
func Load(path string) (*CloudCore, error) {
	c := Default()
	if err := config.Load(path, c); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Validate checks c without side effects; the error names every bad field.
func (c *CloudCore) Validate() error {
	var e config.Errors
	if c.APIVersion != APIVersion {
		e.Addf("apiVersion", "must be %q, got %q", APIVersion, c.APIVersion)
	}
	if c.Kind != Kind {
		e.Addf("kind", "must be %q, got %q", Kind, c.Kind)
	}
	if c.KubeAPIConfig.QPS <= 0 {
		e.Addf("kubeAPIConfig.qps", "must be greater than 0")
	}
	e.CheckPositive("kubeAPIConfig.burst", int64(c.KubeAPIConfig.Burst))
	h := c.Modules.CloudHub
	for i, a := range h.AdvertiseAddress {
		if net.ParseIP(a) == nil {
			e.Addf(fmt.Sprintf("modules.cloudHub.advertiseAddress[%d]", i), "%q is not an IP address", a)
		}
	}
	if len(h.AdvertiseAddress) == 0 && len(h.DNSNames) == 0 {
		e.Addf("modules.cloudHub.advertiseAddress", "at least one advertise address or DNS name is required")
	}
	e.CheckPositive("modules.cloudHub.keepaliveInterval", int64(h.KeepaliveInterval))
	e.CheckPositive("modules.cloudHub.tokenRefreshDuration", int64(h.TokenRefreshDuration))
	e.CheckPositive("modules.cloudHub.edgeCertificateValidityDays", int64(h.EdgeCertificateValidityDays))
	if h.MaxFrameBytes < 64<<10 {
		e.Addf("modules.cloudHub.maxFrameBytes", "must be at least 65536, got %d", h.MaxFrameBytes)
	}
	if !h.WebSocket.Enable && !h.Quic.Enable {
		e.Addf("modules.cloudHub", "enable at least one of websocket and quic")
	}
	for name, l := range map[string]Listener{"websocket": h.WebSocket, "quic": h.Quic, "https": h.HTTPS} {
		if !l.Enable {
			continue
		}
		if net.ParseIP(l.Address) == nil {
			e.Addf("modules.cloudHub."+name+".address", "%q is not an IP address", l.Address)
		}
		e.CheckPort("modules.cloudHub."+name+".port", l.Port)
	}
	if h.Namespace == "" {
		e.Addf("modules.cloudHub.namespace", "must not be empty")
	}
	ec := c.Modules.EdgeController
	e.CheckPositive("modules.edgeController.window", int64(ec.Window))
	e.CheckPositive("modules.edgeController.retryInitialSeconds", int64(ec.RetryInitialSeconds))
	if ec.RetryMaxSeconds < ec.RetryInitialSeconds {
		e.Addf("modules.edgeController.retryMaxSeconds", "must be at least retryInitialSeconds (%d), got %d", ec.RetryInitialSeconds, ec.RetryMaxSeconds)
	}
	e.CheckPositive("modules.edgeController.workers", int64(ec.Workers))
	e.CheckPositive("modules.edgeController.upstreamWorkers", int64(ec.UpstreamWorkers))
	if s := ec.PodEviction.TolerationSeconds; s != nil && *s < 0 {
		e.Addf("modules.edgeController.podEviction.tolerationSeconds", "must not be negative, got %d", *s)
	}
	e.CheckPositive("modules.edgeController.nodeLeaseDurationSeconds", int64(ec.NodeLeaseDurationSeconds))
	e.CheckPositive("modules.edgeController.nodeStatusResyncSeconds", int64(ec.NodeStatusResyncSeconds))
	e.CheckPositive("modules.syncController.workers", int64(c.Modules.SyncController.Workers))
	c.Modules.DeviceController.validate(&e)
	c.Modules.CloudStream.validate(&e)
	return e.Err()
}

// KeepaliveTimeout is KeepaliveInterval as a duration.
func (h CloudHub) KeepaliveTimeout() time.Duration {
	return time.Duration(h.KeepaliveInterval) * time.Second
}
