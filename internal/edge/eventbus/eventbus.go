package eventbus

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/kubeedge-go/kubeedge/internal/edge/devicetwin"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// Modes, with KubeEdge's numbers.
const (
	ModeInternal = 0
	ModeBoth     = 1
	ModeExternal = 2
)

// Handler answers device requests (DeviceTwin).
type Handler interface {
	TwinUpdate(ctx context.Context, id string, payload []byte) []devicetwin.Publication
	TwinGet(ctx context.Context, id string, payload []byte) []devicetwin.Publication
	StateUpdate(ctx context.Context, id string, payload []byte) []devicetwin.Publication
	StateGet(ctx context.Context, id string, payload []byte) []devicetwin.Publication
	MembershipGet(ctx context.Context, payload []byte) []devicetwin.Publication
}

// Config configures the bus.
type Config struct {
	NodeName string
	Mode     int
	// InternalAddr is the embedded broker's host:port.
	InternalAddr string
	// ExternalURL is the external broker, e.g. tcp://127.0.0.1:1883.
	ExternalURL string
	ClientID    string
	Username    string
	Password    string
	// QoS of subscriptions and publications (0 or 1; KubeEdge: 0).
	QoS byte
	// Workers handle requests in parallel, sharded by topic.
	Workers   int
	QueueSize int
}

// Deps are the bus's collaborators.
type Deps struct {
	Handler Handler
	// Forward, if set, takes $hw/events/upload/# and +/user/# messages (to
	// the cloud); without it they are counted and dropped.
	Forward func(topic string, payload []byte)
	Logger  *slog.Logger
}

// Stats counts the bus's work.
type Stats struct {
	Received, Published, Rejected, Unroutable, Dropped int64
	ExternalConnects                                   int64
}

// EventBus is the MQTT front of DeviceTwin.
type EventBus struct {
	cfg  Config
	deps Deps
	log  *slog.Logger

	broker *mochi.Server    // nil unless internal or both
	tcp    *listeners.TCP   // the broker's listener
	client paho.Client      // nil unless external or both
	shards []chan inMessage // one per worker
	ready  chan struct{}    // closed once the broker listens and the client is started
	runCtx atomic.Pointer[context.Context]

	received, published, rejected, unroutable, dropped, connects atomic.Int64
}

type inMessage struct {
	topic   string
	payload []byte
}

// New validates cfg; nothing listens until Run.
func New(cfg Config, deps Deps) (*EventBus, error) {
	if deps.Handler == nil {
		return nil, errors.New("eventbus: Handler is required")
	}
	if err := wire.ValidateNodeName(cfg.NodeName); err != nil {
		return nil, fmt.Errorf("eventbus: %w", err)
	}
	if cfg.Mode < ModeInternal || cfg.Mode > ModeExternal {
		return nil, fmt.Errorf("eventbus: mode %d is not 0 (internal), 1 (both) or 2 (external)", cfg.Mode)
	}
	if cfg.QoS > 1 {
		return nil, fmt.Errorf("eventbus: qos %d: only 0 and 1 are supported", cfg.QoS)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 256
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "edgecore-" + cfg.NodeName
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	b := &EventBus{cfg: cfg, deps: deps, log: deps.Logger.With("component", "eventbus"), ready: make(chan struct{})}
	for range cfg.Workers {
		b.shards = append(b.shards, make(chan inMessage, cfg.QueueSize))
	}
	return b, nil
}

// Ready is closed once the embedded broker listens and the external client
// has been started.
func (b *EventBus) Ready() <-chan struct{} { return b.ready }

// InternalAddr is the embedded broker's address, after Ready; "" without one.
func (b *EventBus) InternalAddr() string {
	if b.tcp == nil {
		return ""
	}
	return b.tcp.Address()
}

// Stats returns the counters.
func (b *EventBus) Stats() Stats {
	return Stats{Received: b.received.Load(), Published: b.published.Load(), Rejected: b.rejected.Load(),
		Unroutable: b.unroutable.Load(), Dropped: b.dropped.Load(), ExternalConnects: b.connects.Load()}
}

// Run starts the broker and/or client and serves until ctx is done.
func (b *EventBus) Run(ctx context.Context) error {
	b.runCtx.Store(&ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, ch := range b.shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.work(ctx, ch)
		}()
	}
	if b.cfg.Mode != ModeExternal {
		if err := b.startBroker(); err != nil {
			return err
		}
		defer func() { _ = b.broker.Close() }()
	}
	if b.cfg.Mode != ModeInternal {
		b.startClient()
		defer b.client.Disconnect(250)
	}
	close(b.ready)
	<-ctx.Done()
	return nil
}

func (b *EventBus) startBroker() error {
	// mochi logs every client connect at info; keep it to warnings.
	mlog := slog.New(levelHandler{b.log.Handler().WithAttrs([]slog.Attr{slog.String("broker", "internal")}), slog.LevelWarn})
	s := mochi.New(&mochi.Options{InlineClient: true, Logger: mlog})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		return fmt.Errorf("eventbus: broker: %w", err)
	}
	b.tcp = listeners.NewTCP(listeners.Config{ID: "edgecore", Address: b.cfg.InternalAddr})
	if err := s.AddListener(b.tcp); err != nil {
		return fmt.Errorf("eventbus: embedded broker cannot listen on %s: %w", b.cfg.InternalAddr, err)
	}
	if err := s.Serve(); err != nil {
		return fmt.Errorf("eventbus: broker: %w", err)
	}
	for i, f := range Subscriptions(b.cfg.NodeName) {
		if err := s.Subscribe(f, i+1, func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
			b.dispatch(pk.TopicName, pk.Payload)
		}); err != nil {
			_ = s.Close()
			return fmt.Errorf("eventbus: subscribe %s: %w", f, err)
		}
	}
	b.broker = s
	b.log.Info("embedded MQTT broker listening", "addr", b.tcp.Address())
	return nil
}

func (b *EventBus) startClient() {
	opts := paho.NewClientOptions().
		AddBroker(b.cfg.ExternalURL).
		SetClientID(b.cfg.ClientID).
		SetUsername(b.cfg.Username).
		SetPassword(b.cfg.Password).
		SetCleanSession(true).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(10 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetOrderMatters(false).
		SetOnConnectHandler(func(c paho.Client) {
			b.connects.Add(1)
			// A clean session forgets subscriptions: subscribe on every connect.
			filters := map[string]byte{}
			for _, f := range Subscriptions(b.cfg.NodeName) {
				filters[f] = b.cfg.QoS
			}
			tok := c.SubscribeMultiple(filters, func(_ paho.Client, m paho.Message) {
				b.dispatch(m.Topic(), m.Payload())
			})
			go func() {
				if tok.WaitTimeout(10*time.Second) && tok.Error() != nil {
					b.log.Error("external broker refused the subscriptions", "err", tok.Error())
				}
			}()
			b.log.Info("connected to external MQTT broker", "url", b.cfg.ExternalURL)
		}).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			b.log.Warn("lost the external MQTT broker; reconnecting", "url", b.cfg.ExternalURL, "err", err)
		})
	b.client = paho.NewClient(opts)
	// With ConnectRetry the client keeps trying in the background.
	b.client.Connect()
}

// dispatch hands a message to its worker; it waits when that worker is
// behind, which slows only the publishing connection (mochi) or the
// external subscription.
func (b *EventBus) dispatch(topic string, payload []byte) {
	b.received.Add(1)
	h := fnv.New32a()
	_, _ = h.Write([]byte(topic))
	ch := b.shards[int(h.Sum32())%len(b.shards)]
	m := inMessage{topic: topic, payload: append([]byte(nil), payload...)}
	ctxp := b.runCtx.Load()
	if ctxp == nil {
		b.dropped.Add(1)
		return
	}
	select {
	case ch <- m:
	case <-(*ctxp).Done():
		b.dropped.Add(1)
	}
}

func (b *EventBus) work(ctx context.Context, ch chan inMessage) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-ch:
			b.handle(ctx, m)
		}
	}
}

func (b *EventBus) handle(ctx context.Context, m inMessage) {
	r, err := ParseTopic(b.cfg.NodeName, m.topic)
	if err != nil {
		b.unroutable.Add(1)
		b.log.Warn("MQTT message on an unroutable topic dropped", "topic", m.topic, "err", err)
		return
	}
	h := b.deps.Handler
	var pubs []devicetwin.Publication
	switch r.Kind {
	case KindTwinUpdate, KindTwinCloudUpdated:
		pubs = h.TwinUpdate(ctx, r.Device, m.payload)
	case KindTwinGet:
		pubs = h.TwinGet(ctx, r.Device, m.payload)
	case KindStateUpdate:
		pubs = h.StateUpdate(ctx, r.Device, m.payload)
	case KindStateGet:
		pubs = h.StateGet(ctx, r.Device, m.payload)
	case KindMembershipGet:
		pubs = h.MembershipGet(ctx, m.payload)
	case KindDeviceUpdated:
		// v1beta1 devices have no attributes to update; there is no result
		// topic, so the refusal is logged and counted.
		b.rejected.Add(1)
		b.log.Warn("device attribute updates are not supported (v1beta1 devices have none); message dropped", "topic", m.topic)
		return
	case KindUpload, KindUser:
		if b.deps.Forward == nil {
			b.dropped.Add(1)
			b.log.Debug("user message not forwarded: forwarding to the cloud is not configured", "topic", m.topic)
			return
		}
		b.deps.Forward(m.topic, m.payload)
		return
	}
	for _, p := range pubs {
		if r.Short {
			// Answer on the topic form the device app used.
			p.Topic = strings.Replace(p.Topic, "$hw/events/device/"+r.Device+"/", "$hw/events/device/"+strings.TrimPrefix(r.Device, "default/")+"/", 1)
		}
		if isError(p.Payload) {
			b.rejected.Add(1)
		}
		b.Publish(p)
	}
}

func isError(payload []byte) bool {
	return len(payload) > 0 && strings.Contains(string(payload[:min(len(payload), 64)]), `"code":`)
}

// Publish sends p on every broker in use; it does not wait for delivery.
func (b *EventBus) Publish(p devicetwin.Publication) {
	select {
	case <-b.ready:
	default:
		return // nothing can be subscribed yet
	}
	b.published.Add(1)
	if b.broker != nil {
		if err := b.broker.Publish(p.Topic, p.Payload, false, b.cfg.QoS); err != nil {
			b.log.Debug("publish on the embedded broker failed", "topic", p.Topic, "err", err)
		}
	}
	if b.client != nil && b.client.IsConnectionOpen() {
		b.client.Publish(p.Topic, b.cfg.QoS, false, p.Payload)
	}
}

// levelHandler drops records below min.
type levelHandler struct {
	slog.Handler
	min slog.Level
}

func (h levelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h levelHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return levelHandler{h.Handler.WithAttrs(as), h.min}
}

func (h levelHandler) WithGroup(n string) slog.Handler {
	return levelHandler{h.Handler.WithGroup(n), h.min}
}
