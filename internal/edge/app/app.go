package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/edge/certs"
	"github.com/kubeedge-go/kubeedge/internal/edge/config"
	"github.com/kubeedge-go/kubeedge/internal/edge/cri"
	"github.com/kubeedge-go/kubeedge/internal/edge/edged"
	"github.com/kubeedge-go/kubeedge/internal/edge/hub"
	"github.com/kubeedge-go/kubeedge/internal/edge/kubeletserver"
	"github.com/kubeedge-go/kubeedge/internal/edge/metamanager"
	"github.com/kubeedge-go/kubeedge/internal/edge/metaserver"
	"github.com/kubeedge-go/kubeedge/internal/edge/nodestatus"
	edgestream "github.com/kubeedge-go/kubeedge/internal/edge/stream"
	"github.com/kubeedge-go/kubeedge/internal/edge/tokens"
	"github.com/kubeedge-go/kubeedge/internal/edge/uplink"
	"github.com/kubeedge-go/kubeedge/internal/memtrim"
	"github.com/kubeedge-go/kubeedge/internal/store"
	"github.com/kubeedge-go/kubeedge/internal/transport"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// KubeletVersion is what edge nodes report as their kubelet version.
const KubeletVersion = "v1.35.4-kubeedge-go"

// Deps are what edgecore takes from its caller.
type Deps struct {
	Clock  clock.WithTicker
	Logger *slog.Logger
	// Store, if set, replaces the SQLite database (hollow nodes use memory).
	Store store.Store
	// DescribeNode, if set, replaces reading the host (hollow nodes).
	DescribeNode func() (*corev1.Node, error)
}

// EdgeCore is the edge side, wired.
type EdgeCore struct {
	cfg *config.EdgeCore
	log *slog.Logger
	clk clock.WithTicker

	Certs *certs.Manager
	Store store.Store
	Meta  *metamanager.MetaManager
	Hub   *hub.Client
	Up    *uplink.Uplink
	// Meta serves the store to edge apps; nil when off. Read after Ready.
	MetaServer *metaserver.Server
	// Edged runs the node's pods; nil when modules.edged.enable is off.
	// Read after Ready.
	Edged  *edged.Edged
	Tokens *tokens.Source
	// Devices may be read after Ready.
	Devices Devices
	// Stream and Kubelet are EdgeStream and the kubelet API server, nil
	// unless modules.edgeStream is enabled.
	Stream    *edgestream.Client
	Kubelet   *kubeletserver.Server
	streamCRI *cri.Client

	describe     func() (*corev1.Node, error)
	ownStore     bool
	statusWrites atomic.Int64
	ready        chan struct{} // closed once Store and Meta are set
}

// Ready is closed once the store is open and MetaManager exists; Store and
// Meta may be read only after that.
func (e *EdgeCore) Ready() <-chan struct{} { return e.ready }

// New validates cfg and builds the components; nothing touches the network
// or the disk until Run.
func New(cfg *config.EdgeCore, deps Deps) (*EdgeCore, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Clock == nil {
		deps.Clock = clock.RealClock{}
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	h := cfg.Modules.EdgeHub
	e := &EdgeCore{cfg: cfg, log: deps.Logger, clk: deps.Clock, Store: deps.Store, describe: deps.DescribeNode, ready: make(chan struct{})}
	if e.describe == nil {
		e.describe = func() (*corev1.Node, error) {
			return nodestatus.Collect(nodestatus.Config{
				NodeName: cfg.NodeName(), NodeIP: cfg.Modules.Edged.NodeIP, Labels: cfg.Modules.Edged.NodeLabels,
				MaxPods: cfg.Modules.Edged.MaxPods, DataDir: filepath.Dir(cfg.Database.DataSource),
				KubeletVersion: KubeletVersion, KubeletPort: kubeletPort(cfg),
			}, deps.Clock.Now())
		}
	}
	var err error
	if e.Certs, err = certs.New(certs.Config{
		Server: h.HTTPServer, Token: h.Token, NodeName: cfg.NodeName(),
		CAFile: h.TLSCAFile, CertFile: h.TLSCertFile, KeyFile: h.TLSPrivateKeyFile,
	}, certs.Deps{Clock: deps.Clock, Logger: deps.Logger}); err != nil {
		return nil, err
	}
	kind, server := transport.KindWebSocket, h.WebSocket.Server
	if h.Quic.Enable {
		kind, server = transport.KindQUIC, h.Quic.Server
	}
	host, _, _ := net.SplitHostPort(server) // validated by cfg.Validate
	if e.Hub, err = hub.New(hub.Config{
		Transport: kind, Server: server, ProjectID: h.ProjectID, NodeName: cfg.NodeName(),
		Heartbeat: h.HeartbeatPeriod(), MaxFrameBytes: h.MaxFrameBytes,
		ReconnectInitial: time.Duration(h.Reconnect.InitialMillis) * time.Millisecond,
		ReconnectMax:     time.Duration(h.Reconnect.MaxMillis) * time.Millisecond,
		MessageQPS:       h.MessageQPS, MessageBurst: h.MessageBurst,
	}, hub.Deps{
		TLS:     func() *tls.Config { return e.Certs.ClientTLSConfig(host) },
		Handler: (*edgeHandler)(e),
		Clock:   deps.Clock,
		Logger:  deps.Logger,
	}); err != nil {
		return nil, err
	}
	if e.Up, err = uplink.New(uplink.Config{}, uplink.Deps{Sender: e.Hub, Clock: deps.Clock, Logger: deps.Logger}); err != nil {
		return nil, err
	}
	if err := e.setupStream(); err != nil {
		return nil, err
	}
	return e, nil
}

// Run obtains certificates (retrying while the cloud is unreachable, unless
// they are already on disk), opens the store and runs every component until
// ctx is done.
func (e *EdgeCore) Run(ctx context.Context) error {
	if err := e.bootstrap(ctx); err != nil {
		return err
	}
	if e.Store == nil {
		s, err := store.Open(ctx, e.cfg.Database.DataSource)
		if err != nil {
			return fmt.Errorf("edgecore: %w", err)
		}
		e.Store, e.ownStore = s, true
		if db := e.cfg.Database; db.EncryptSecrets {
			key, err := store.LoadOrCreateKey(db.EncryptionKeyFile)
			if err != nil {
				_ = s.Close()
				return fmt.Errorf("edgecore: database encryption: %w", err)
			}
			if e.Store, err = store.NewEncrypted(s, key, string(wire.TypeSecret), tokens.StoreType); err != nil {
				_ = s.Close()
				return fmt.Errorf("edgecore: %w", err)
			}
		}
	}
	defer func() {
		if e.ownStore {
			_ = e.Store.Close()
		}
	}()
	defer e.closeStream()
	var err error
	if e.Meta, err = metamanager.New(metamanager.Config{BatchSize: e.cfg.Modules.MetaManager.BatchSize},
		metamanager.Deps{Store: e.Store, Sender: e.Hub, Clock: e.clk, Logger: e.log, Changed: e.storeChanged}); err != nil {
		return err
	}
	if err := e.newDevices(); err != nil {
		return err
	}
	if e.Tokens, err = tokens.New(tokens.Deps{Querier: e.Up, Store: e.Store, Clock: e.clk, Logger: e.log}); err != nil {
		return err
	}
	if e.cfg.Modules.Edged.Enable {
		if e.Edged, err = edged.New(EdgedConfig(e.cfg), edged.Deps{
			Store: e.Store, Reporter: e.Up, Tokens: e.Tokens, Clock: e.clk, Logger: e.log,
		}); err != nil {
			return err
		}
	}
	if ms := e.cfg.Modules.MetaManager.MetaServer; ms.Enable {
		if e.MetaServer, err = metaserver.New(metaserver.Config{Address: ms.Server, ServeSecrets: ms.ServeSecrets},
			metaserver.Deps{Store: e.Store, Clock: e.clk, Logger: e.log}); err != nil {
			return err
		}
	}
	close(e.ready)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return e.Meta.Run(gctx) })
	g.Go(func() error { return e.Hub.Run(gctx) })
	g.Go(func() error { return e.Up.Run(gctx) })
	if e.MetaServer != nil {
		g.Go(func() error { return e.MetaServer.Run(gctx) })
	}
	if e.Edged != nil {
		g.Go(func() error { return e.Edged.Run(gctx) })
	}
	if e.cfg.Modules.EdgeHub.Rotate.Enable {
		g.Go(func() error { return e.Certs.Run(gctx) })
	}
	g.Go(func() error { return e.reportStatus(gctx) })
	if e.cfg.Memory.ReleaseStartupPages {
		g.Go(func() error { e.releaseStartupPages(gctx); return nil })
	}
	e.runDevices(gctx, g)
	e.runStream(gctx, g)
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// releaseStartupPages waits until start-up is over, then returns the
// executable's start-up pages to the kernel once.
func (e *EdgeCore) releaseStartupPages(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-e.clk.After(time.Duration(e.cfg.Memory.ReleaseAfterSeconds) * time.Second):
	}
	covered, err := memtrim.ReleaseExecutablePages()
	switch {
	case errors.Is(err, memtrim.ErrUnsupported):
		e.log.Info("not releasing start-up pages", "reason", err)
	case err != nil:
		e.log.Warn("releasing start-up pages failed", "err", err)
	default:
		e.log.Debug("released the executable's start-up pages", "addressSpaceMiB", covered>>20)
	}
}

func (e *EdgeCore) bootstrap(ctx context.Context) error {
	delay := time.Second
	for {
		err := e.Certs.Bootstrap(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		e.log.Warn("cannot obtain certificates yet; retrying", "err", err, "in", delay)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-e.clk.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// storeChanged is MetaManager's Changed hook, called for every change it
// committed, in its goroutine: each consumer must take it without blocking.
func (e *EdgeCore) storeChanged(ch store.Change) {
	e.devicesChanged(ch)
	if e.Edged != nil {
		e.Edged.Notify(ch)
	}
	if e.MetaServer != nil {
		e.MetaServer.Notify(ch)
	}
	if ch.Op == store.OpDelete && ch.Object.Type == string(wire.TypePod) {
		// The pod is gone from the cloud: nothing left to report about it.
		e.Up.Forget(ch.Object.Namespace, ch.Object.Name)
	}
}

// reportStatus sends the node status periodically while connected.
func (e *EdgeCore) reportStatus(ctx context.Context) error {
	tick := e.clk.NewTicker(time.Duration(e.cfg.Modules.Edged.NodeStatusUpdateFrequency) * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C():
			if e.Hub.IsConnected() {
				e.sendNode(ctx, wire.TypeNodeStatus)
			}
		}
	}
}

// sendNode sends the node object (registration) or its status.
func (e *EdgeCore) sendNode(ctx context.Context, typ wire.ResourceType) {
	n, err := e.describe()
	if err != nil {
		e.log.Error("cannot describe the node", "err", err)
		return
	}
	if e.Edged != nil {
		if imgs, err := e.Edged.Images(ctx); err == nil {
			n.Status.Images = imgs
		} else {
			e.log.Debug("images not listed for the node status", "err", err)
		}
		if v, err := e.Edged.Runtime().Version(ctx); err == nil {
			n.Status.NodeInfo.ContainerRuntimeVersion = v.RuntimeName + "://" + v.RuntimeVersion
		}
	}
	var content any = n
	op := wire.OpInsert
	if typ == wire.TypeNodeStatus {
		content, op = n.Status, wire.OpUpdate
	}
	m, err := wire.New(e.clk.Now(), wire.SourceEdged, wire.GroupResource, op, wire.Resource{Type: typ, Name: e.cfg.NodeName()}, content)
	if err != nil {
		e.log.Error("cannot encode node", "err", err)
		return
	}
	if err := e.Hub.Send(ctx, m); err != nil {
		e.log.Debug("node report not sent", "type", typ, "err", err)
		return
	}
	e.statusWrites.Add(1)
}

// edgeHandler is EdgeCore seen by EdgeHub.
type edgeHandler EdgeCore

func (h *edgeHandler) Connected(ctx context.Context) {
	(*EdgeCore)(h).cloudConnected(true)
	(*EdgeCore)(h).sendNode(ctx, wire.TypeNode)
}

func (h *edgeHandler) Disconnected() {
	h.Up.Disconnected()
	(*EdgeCore)(h).cloudConnected(false)
}

func (h *edgeHandler) HandleMessage(ctx context.Context, m wire.Message) {
	if h.handleStream(ctx, m) {
		return
	}
	switch m.Operation {
	case wire.OpInsert, wire.OpUpdate, wire.OpDelete:
		h.Meta.Handle(ctx, m)
	case wire.OpResponse, wire.OpError:
		// Acks and answers of what the edge sent: the uplink's (pod reports,
		// queries) or DeviceTwin's (device reports, which are retried until
		// a positive ack). Acks of node reports are not tracked: they are
		// resent periodically anyway.
		if !h.Up.HandleReply(m) && m.Operation == wire.OpResponse {
			(*EdgeCore)(h).cloudAcked(m)
		}
	default:
		h.log.Warn("unsupported message from cloud", "op", m.Operation, "resource", m.Resource)
		_ = h.Hub.SendNow(ctx, wire.NewError(h.clk.Now(), wire.SourceEdgeHub, m.Header.ID,
			fmt.Sprintf("operation %q on %s is not supported by this edge", m.Operation, m.Resource.Type)))
	}
}
