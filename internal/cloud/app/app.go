package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/cloud/autonomy"
	"github.com/kubeedge-go/kubeedge/internal/cloud/certs"
	"github.com/kubeedge-go/kubeedge/internal/cloud/config"
	"github.com/kubeedge-go/kubeedge/internal/cloud/delivery"
	"github.com/kubeedge-go/kubeedge/internal/cloud/devicecontroller"
	"github.com/kubeedge-go/kubeedge/internal/cloud/edgecontroller"
	"github.com/kubeedge-go/kubeedge/internal/cloud/hub"
	"github.com/kubeedge-go/kubeedge/internal/cloud/join"
	"github.com/kubeedge-go/kubeedge/internal/cloud/nodes"
	"github.com/kubeedge-go/kubeedge/internal/cloud/objectsync"
	"github.com/kubeedge-go/kubeedge/internal/cloud/stream"
	"github.com/kubeedge-go/kubeedge/internal/cloud/upstream"
	"github.com/kubeedge-go/kubeedge/internal/pki"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// Deps are what cloudcore takes from its caller.
type Deps struct {
	// RESTConfig, if set, is used instead of cfg.KubeAPIConfig.
	RESTConfig *rest.Config
	Clock      clock.WithTickerAndDelayedExecution
	Logger     *slog.Logger
}

// CloudCore is the cloud side, wired.
type CloudCore struct {
	cfg  *config.CloudCore
	log  *slog.Logger
	clk  clock.WithTickerAndDelayedExecution
	rest *rest.Config

	Client   kubernetes.Interface
	Dynamic  dynamic.Interface
	Material *certs.Material
	Hub      *hub.Hub
	Join     *join.Server
	Delivery *delivery.Delivery
	Acks     *objectsync.Store
	Edges    *edgecontroller.Controller
	Devices  *devicecontroller.Controller // nil when modules.deviceController is off
	Nodes    *nodes.Manager
	Tokens   *certs.TokenKeeper
	Pods     *upstream.Writer
	Autonomy *autonomy.Keeper // nil unless podEviction.keepPodsOnUnreachableNodes
	// Stream and StreamNodes are CloudStream, nil unless enabled.
	Stream      *stream.Server
	StreamNodes *stream.NodeIndex

	ready chan struct{}
}

// RESTConfig builds the Kubernetes client configuration from cfg: a
// kubeconfig file when set, else in-cluster.
func RESTConfig(cfg config.KubeAPIConfig) (*rest.Config, error) {
	var rc *rest.Config
	var err error
	if cfg.KubeConfig == "" && cfg.Master == "" {
		rc, err = rest.InClusterConfig()
	} else {
		rc, err = clientcmd.BuildConfigFromFlags(cfg.Master, cfg.KubeConfig)
	}
	if err != nil {
		return nil, fmt.Errorf("cloudcore: kubernetes client configuration: %w", err)
	}
	rc.QPS, rc.Burst = cfg.QPS, cfg.Burst
	rc.UserAgent = "cloudcore"
	return rc, nil
}

// New builds cloudcore's clients; key material and servers are set up in Run
// because they need the apiserver.
func New(cfg *config.CloudCore, deps Deps) (*CloudCore, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Clock == nil {
		deps.Clock = clock.RealClock{}
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	rc := deps.RESTConfig
	if rc == nil {
		var err error
		if rc, err = RESTConfig(cfg.KubeAPIConfig); err != nil {
			return nil, err
		}
	} else {
		rc = rest.CopyConfig(rc)
		rc.QPS, rc.Burst = cfg.KubeAPIConfig.QPS, cfg.KubeAPIConfig.Burst
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("cloudcore: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("cloudcore: %w", err)
	}
	return &CloudCore{cfg: cfg, log: deps.Logger, clk: deps.Clock, rest: rc, Client: client, Dynamic: dyn,
		ready: make(chan struct{})}, nil
}

// Ready is closed once every listener is bound.
func (c *CloudCore) Ready() <-chan struct{} { return c.ready }

// Run sets up key material, starts every component and blocks until ctx is
// done or one of them fails.
func (c *CloudCore) Run(ctx context.Context) error {
	hc := c.cfg.Modules.CloudHub
	ec := c.cfg.Modules.EdgeController
	if c.cfg.Modules.SyncController.InstallCRDs {
		if err := objectsync.InstallCRDs(ctx, c.Dynamic); err != nil {
			return fmt.Errorf("cloudcore: install CRDs: %w", err)
		}
		if err := c.installDeviceCRDs(ctx); err != nil {
			return err
		}
	}
	certCfg := certs.Config{
		Namespace:          hc.Namespace,
		AdvertiseAddresses: hc.AdvertiseAddress,
		DNSNames:           hc.DNSNames,
		TokenRefresh:       time.Duration(hc.TokenRefreshDuration) * time.Hour,
		NodeCertValidity:   time.Duration(hc.EdgeCertificateValidityDays) * 24 * time.Hour,
		Logger:             c.log,
	}
	mat, err := certs.Ensure(ctx, c.Client, certCfg, c.clk)
	if err != nil {
		return fmt.Errorf("cloudcore: key material: %w", err)
	}
	c.Material = mat
	if c.Tokens, err = certs.NewTokenKeeper(certCfg, certs.TokenKeeperDeps{Client: c.Client, CA: mat.CA, Clock: c.clk, Logger: c.log}); err != nil {
		return err
	}
	if c.Acks, err = objectsync.New(objectsync.Config{Workers: c.cfg.Modules.SyncController.Workers},
		objectsync.Deps{Dynamic: c.Dynamic, Logger: c.log}); err != nil {
		return err
	}
	var dlv *delivery.Delivery
	if c.Edges, err = edgecontroller.New(edgecontroller.Deps{
		Client: c.Client, Logger: c.log,
		Enqueue: func(node string, key wire.Resource) { dlv.Enqueue(node, key) },
	}); err != nil {
		return err
	}
	if c.Devices, err = c.newDevices(func(node string, key wire.Resource) { dlv.Enqueue(node, key) }); err != nil {
		return err
	}
	if dlv, err = delivery.New(delivery.Config{
		Window:       ec.Window,
		RetryInitial: time.Duration(ec.RetryInitialSeconds) * time.Second,
		RetryMax:     time.Duration(ec.RetryMaxSeconds) * time.Second,
		Workers:      ec.Workers,
	}, delivery.Deps{Source: c.sources(), Acks: c.Acks, Clock: c.clk, Logger: c.log}); err != nil {
		return err
	}
	c.Delivery = dlv
	if c.Nodes, err = nodes.New(nodes.Config{
		LeaseDurationSeconds: int32(ec.NodeLeaseDurationSeconds),
		StatusResync:         time.Duration(ec.NodeStatusResyncSeconds) * time.Second,
	}, nodes.Deps{Client: c.Client, Clock: c.clk, Logger: c.log}); err != nil {
		return err
	}
	if c.Pods, err = upstream.New(upstream.Config{}, upstream.Deps{Client: c.Client, Pods: c.Edges, Clock: c.clk, Logger: c.log}); err != nil {
		return err
	}
	pool := upstream.NewPool(ec.UpstreamWorkers)
	if pe := ec.PodEviction; pe.KeepPodsOnUnreachableNodes {
		if c.Autonomy, err = autonomy.New(autonomy.Config{TolerationSeconds: pe.TolerationSeconds},
			autonomy.Deps{Client: c.Client, Pods: c.Edges, Nodes: c.Nodes, Logger: c.log}); err != nil {
			return err
		}
	}
	if err := c.setupStream(mat); err != nil {
		return err
	}
	hubCfg := hub.Config{KeepaliveTimeout: hc.KeepaliveTimeout(), MaxFrameBytes: hc.MaxFrameBytes}
	if hc.WebSocket.Enable {
		hubCfg.WebSocketAddr = hc.WebSocket.HostPort()
	}
	if hc.Quic.Enable {
		hubCfg.QUICAddr = hc.Quic.HostPort()
	}
	if c.Hub, err = hub.New(hubCfg, hub.Deps{
		TLS: mat.ServerTLSConfig(tls.RequireAndVerifyClientCert),
		Handler: &edgeHandler{delivery: dlv, nodes: c.Nodes, pods: c.Pods, pool: pool, devices: c.Devices,
			stream: c.Stream, clock: c.clk, log: c.log},
		Clock:        c.clk,
		Logger:       c.log,
		NodeFromCert: pki.NodeNameFromCert,
	}); err != nil {
		return err
	}
	if hc.HTTPS.Enable {
		if c.Join, err = join.New(join.Config{Address: hc.HTTPS.HostPort(), NodeCertValidity: certCfg.NodeCertValidity},
			join.Deps{CA: mat.CA, ServerCert: mat.ServerCert, Clock: c.clk, Logger: c.log}); err != nil {
			return err
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	run := func(name string, f func(context.Context) error) {
		g.Go(func() error {
			if err := f(gctx); err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
	}
	run("tokens", c.Tokens.Run)
	run("objectsync", c.Acks.Run)
	run("edgecontroller", c.Edges.Run)
	run("delivery", dlv.Run)
	if c.Devices != nil {
		run("devicecontroller", c.Devices.Run)
	}
	run("nodes", c.Nodes.Run)
	run("upstream", pool.Run)
	if c.Autonomy != nil {
		run("autonomy", c.Autonomy.Run)
	}
	run("cloudhub", c.Hub.Run)
	if c.Join != nil {
		run("join", c.Join.Run)
	}
	if c.Stream != nil {
		run("cloudstream-nodes", c.StreamNodes.Run)
		run("cloudstream", c.Stream.Run)
	}
	g.Go(func() error {
		select {
		case <-c.Hub.Ready():
		case <-gctx.Done():
			return nil
		}
		if c.Join != nil {
			for c.Join.Addr() == nil {
				select {
				case <-gctx.Done():
					return nil
				case <-c.clk.After(10 * time.Millisecond):
				}
			}
		}
		if c.Stream != nil {
			select {
			case <-c.Stream.Ready():
			case <-gctx.Done():
				return nil
			}
		}
		ws, quic := c.Hub.Addrs()
		c.log.Info("cloudcore ready", "websocket", ws, "quic", quic, "ca", mat.CA.Hash()[:16])
		close(c.ready)
		return nil
	})
	return g.Wait()
}
