// Package hollow runs many simulated edge nodes in one process for scale
// tests and benchmarks. Each hollow node is a real edgecore core (real join,
// real certificate, real TLS session, keepalives, MetaManager acks) with an
// in-memory store and a synthetic node description instead of containers.
package hollow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/edge/app"
	"github.com/kubeedge-go/kubeedge/internal/edge/config"
	"github.com/kubeedge-go/kubeedge/internal/store"
)

// Config describes the fleet.
type Config struct {
	Count      int
	NamePrefix string
	// Dir holds each node's certificates (Dir/<name>/...).
	Dir        string
	CloudHost  string
	HubPort    int
	QUICPort   int
	CertPort   int
	Token      string
	Transport  string // "websocket" or "quic"
	StatusFreq int    // seconds between node status reports
	Heartbeat  int    // seconds between keepalives
	// StartRate is the most nodes started per second (0 = all at once).
	StartRate int
}

// Fleet is a set of hollow nodes.
type Fleet struct {
	cfg   Config
	log   *slog.Logger
	mu    sync.Mutex
	Nodes []*app.EdgeCore // guarded by mu; filled as nodes are built
}

// New validates cfg.
func New(cfg Config, log *slog.Logger) (*Fleet, error) {
	if cfg.Count <= 0 || cfg.NamePrefix == "" || cfg.Dir == "" || cfg.CloudHost == "" {
		return nil, errors.New("hollow: Count, NamePrefix, Dir and CloudHost are required")
	}
	if log == nil {
		log = slog.Default()
	}
	return &Fleet{cfg: cfg, log: log}, nil
}

// NodeConfig is the edgecore configuration of hollow node i.
func (f *Fleet) NodeConfig(i int) *config.EdgeCore {
	name := fmt.Sprintf("%s%d", f.cfg.NamePrefix, i)
	dir := filepath.Join(f.cfg.Dir, name)
	c := config.Default(name)
	h := &c.Modules.EdgeHub
	c.Database.DataSource = filepath.Join(dir, "unused.db")
	h.TLSCAFile = filepath.Join(dir, "ca.crt")
	h.TLSCertFile = filepath.Join(dir, "node.crt")
	h.TLSPrivateKeyFile = filepath.Join(dir, "node.key")
	h.Token = f.cfg.Token
	h.HTTPServer = fmt.Sprintf("https://%s:%d", f.cfg.CloudHost, f.cfg.CertPort)
	h.WebSocket = config.HubAddr{Enable: f.cfg.Transport != "quic", Server: fmt.Sprintf("%s:%d", f.cfg.CloudHost, f.cfg.HubPort)}
	h.Quic = config.HubAddr{Enable: f.cfg.Transport == "quic", Server: fmt.Sprintf("%s:%d", f.cfg.CloudHost, f.cfg.QUICPort)}
	h.Rotate.Enable = false
	// Hollow nodes share one process: no MQTT broker or DMI socket each.
	c.Modules.EventBus.Enable = false
	c.Modules.DMI.Enable = false
	c.Modules.MetaManager.MetaServer.Enable = false
	c.Modules.Edged.Enable = false // hollow: no containers
	if f.cfg.Heartbeat > 0 {
		h.Heartbeat = f.cfg.Heartbeat
	}
	if f.cfg.StatusFreq > 0 {
		c.Modules.Edged.NodeStatusUpdateFrequency = f.cfg.StatusFreq
	}
	return c
}

// Connected counts nodes with a live session.
func (f *Fleet) Connected() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, e := range f.Nodes {
		if e.Hub.IsConnected() {
			n++
		}
	}
	return n
}

// Run starts every node and blocks until ctx is done.
func (f *Fleet) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	var pace <-chan time.Time
	if f.cfg.StartRate > 0 {
		t := time.NewTicker(time.Second / time.Duration(f.cfg.StartRate))
		defer t.Stop()
		pace = t.C
	}
	quiet := slog.New(discard{})
	errs := make(chan error, 1)
	for i := range f.cfg.Count {
		if pace != nil {
			select {
			case <-ctx.Done():
			case <-pace:
			}
		}
		if ctx.Err() != nil {
			break
		}
		cfg := f.NodeConfig(i)
		name := cfg.NodeName()
		e, err := app.New(cfg, app.Deps{
			Clock:        clock.RealClock{},
			Logger:       quiet,
			Store:        store.NewMemory(),
			DescribeNode: func() (*corev1.Node, error) { return describe(name), nil },
		})
		if err != nil {
			return fmt.Errorf("hollow: node %s: %w", name, err)
		}
		f.mu.Lock()
		f.Nodes = append(f.Nodes, e)
		f.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.Run(ctx); err != nil && ctx.Err() == nil {
				f.log.Error("hollow node stopped", "node", name, "err", err)
				select {
				case errs <- fmt.Errorf("hollow: node %s: %w", name, err):
				default:
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// describe is a hollow node's synthetic description.
func describe(name string) *corev1.Node {
	now := metav1.Now()
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("4"),
		corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			"kubernetes.io/hostname": name, "node-role.kubernetes.io/edge": "", "kubeedge.io/hollow": "true",
		}},
		Status: corev1.NodeStatus{
			Capacity: res, Allocatable: res,
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}, {Type: corev1.NodeHostName, Address: name}},
			NodeInfo:  corev1.NodeSystemInfo{KubeletVersion: app.KubeletVersion, OperatingSystem: "linux", Architecture: "amd64"},
			Conditions: []corev1.NodeCondition{{
				Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "EdgeReady",
				Message: "hollow edge node", LastHeartbeatTime: now, LastTransitionTime: now,
			}},
		},
	}
}

type discard struct{}

func (discard) Enabled(context.Context, slog.Level) bool  { return false }
func (discard) Handle(context.Context, slog.Record) error { return nil }
func (d discard) WithAttrs([]slog.Attr) slog.Handler      { return d }
func (d discard) WithGroup(string) slog.Handler           { return d }
