package opcua

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"

	"github.com/kubeedge-go/kubeedge/pkg/mapper"
)

// Protocol is the protocolName this driver serves.
const Protocol = "opcua"

// Driver implements mapper.Driver for OPC-UA.
type Driver struct{}

// New returns an OPC-UA driver.
func New() *Driver { return &Driver{} }

var _ mapper.Driver = (*Driver)(nil)

// NewDevice implements mapper.Driver.
func (*Driver) NewDevice(spec mapper.DeviceSpec) (mapper.Device, error) {
	p, err := parseProtocol(spec)
	if err != nil {
		return nil, err
	}
	return &device{cfg: p, types: map[string]ua.TypeID{}}, nil
}

// ParseVisitor implements mapper.Driver.
func (*Driver) ParseVisitor(p mapper.PropertySpec) (mapper.Visitor, error) {
	return parseVisitor(p)
}

// device is one OPC-UA server session.
type device struct {
	cfg    protocolConfig
	client *opcua.Client
	ctx    context.Context    // lives as long as the connection
	cancel context.CancelFunc // ends the client's background goroutines
	types  map[string]ua.TypeID

	mu       sync.Mutex
	sub      *opcua.Subscription         // guarded by mu
	handlers map[uint32]func(any, error) // by client handle; guarded by mu
	next     uint32                      // guarded by mu
	readers  sync.WaitGroup              // the subscription reader goroutine
}

var (
	_ mapper.Device     = (*device)(nil)
	_ mapper.Subscriber = (*device)(nil)
)

func (d *device) Connect(ctx context.Context) error {
	eps, err := opcua.GetEndpoints(ctx, d.cfg.url, opcua.DialTimeout(d.cfg.timeout))
	if err != nil {
		return fmt.Errorf("opcua %s: get endpoints: %w", d.cfg.url, err)
	}
	var ep *ua.EndpointDescription
	for _, e := range eps {
		if e.SecurityPolicyURI == d.cfg.policy && e.SecurityMode == d.cfg.mode {
			ep = e
			break
		}
	}
	if ep == nil {
		return fmt.Errorf("opcua %s: the server offers no endpoint with securityPolicy %s and securityMode %s", d.cfg.url, d.cfg.policyName, d.cfg.modeName)
	}
	tokenType := ua.UserTokenTypeAnonymous
	if d.cfg.username != "" {
		tokenType = ua.UserTokenTypeUserName
	}
	offered := false
	for _, t := range ep.UserIdentityTokens {
		offered = offered || t.TokenType == tokenType
	}
	if !offered {
		return fmt.Errorf("opcua %s: the endpoint does not accept %v logins", d.cfg.url, tokenType)
	}
	opts := []opcua.Option{
		opcua.SecurityPolicy(d.cfg.policy),
		opcua.SecurityMode(d.cfg.mode),
		opcua.AutoReconnect(false), // the SDK reconnects, with a fresh session
		opcua.RequestTimeout(d.cfg.timeout),
		opcua.DialTimeout(d.cfg.timeout),
		opcua.ApplicationName("kubeedge-go mapper"),
		opcua.StateChangedFunc(d.stateChanged),
	}
	if d.cfg.certFile != "" {
		opts = append(opts, opcua.CertificateFile(d.cfg.certFile), opcua.PrivateKeyFile(d.cfg.keyFile))
	}
	if d.cfg.username != "" {
		opts = append(opts, opcua.AuthUsername(d.cfg.username, d.cfg.password))
	} else {
		opts = append(opts, opcua.AuthAnonymous())
	}
	opts = append(opts, opcua.SecurityFromEndpoint(ep, tokenType))
	c, err := opcua.NewClient(d.cfg.url, opts...)
	if err != nil {
		return fmt.Errorf("opcua %s: %w", d.cfg.url, err)
	}
	// The client's monitor and publish loops live as long as the context
	// given to Connect, so that context is the device's, not the call's.
	dctx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancel)
	err = c.Connect(dctx)
	if !stop() || err != nil {
		cancel()
		if err == nil {
			err = ctx.Err()
		}
		return fmt.Errorf("opcua %s: connect (%s, %s): %w", d.cfg.url, d.cfg.policyName, d.cfg.modeName, err)
	}
	d.client, d.ctx, d.cancel = c, dctx, cancel
	d.mu.Lock()
	d.handlers = map[uint32]func(any, error){}
	d.mu.Unlock()
	return nil
}

// stateChanged tells subscribers that the session is gone, so a device
// collected only through subscriptions reconnects too.
func (d *device) stateChanged(s opcua.ConnState) {
	if s != opcua.Disconnected && s != opcua.Closed {
		return
	}
	d.mu.Lock()
	hs := make([]func(any, error), 0, len(d.handlers))
	for _, h := range d.handlers {
		hs = append(hs, h)
	}
	d.mu.Unlock()
	for _, h := range hs {
		h(nil, fmt.Errorf("opcua %s: session %v: %w", d.cfg.url, s, mapper.ErrDisconnected))
	}
}

func (d *device) Close() error {
	if d.client == nil {
		return nil
	}
	d.mu.Lock()
	d.handlers = nil // no callbacks for the shutdown itself
	d.sub = nil
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.timeout)
	err := d.client.Close(ctx)
	cancel()
	d.cancel()
	d.readers.Wait()
	d.client, d.ctx, d.cancel = nil, nil, nil
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("opcua %s: close: %w", d.cfg.url, err)
	}
	return nil
}

// lost wraps a failed service call as a connection loss.
func (d *device) lost(op string, v *visitor, err error) error {
	return fmt.Errorf("opcua %s: %s %s: %w: %w", d.cfg.url, op, v, mapper.ErrDisconnected, err)
}

func (d *device) read(ctx context.Context, v *visitor) (*ua.DataValue, error) {
	if d.client == nil {
		return nil, fmt.Errorf("opcua %s: %w", d.cfg.url, mapper.ErrDisconnected)
	}
	resp, err := d.client.Read(ctx, &ua.ReadRequest{
		NodesToRead:        []*ua.ReadValueID{{NodeID: v.nodeID, AttributeID: ua.AttributeIDValue}},
		TimestampsToReturn: ua.TimestampsToReturnNeither,
	})
	if err != nil {
		return nil, d.lost("read", v, err)
	}
	if len(resp.Results) != 1 {
		return nil, d.lost("read", v, fmt.Errorf("%d results for 1 node", len(resp.Results)))
	}
	res := resp.Results[0]
	if res.Status != ua.StatusOK {
		return nil, fmt.Errorf("opcua %s: read %s: %w", d.cfg.url, v, res.Status)
	}
	if res.Value != nil {
		d.types[v.raw] = res.Value.Type()
	}
	return res, nil
}

func (d *device) Read(ctx context.Context, vis mapper.Visitor) (any, error) {
	v := vis.(*visitor)
	res, err := d.read(ctx, v)
	if err != nil {
		return nil, err
	}
	val, err := fromVariant(res.Value)
	if err != nil {
		return nil, fmt.Errorf("opcua %s: read %s: %w", d.cfg.url, v, err)
	}
	return val, nil
}

func (d *device) Write(ctx context.Context, vis mapper.Visitor, value any) error {
	v := vis.(*visitor)
	t, ok := d.types[v.raw]
	if !ok {
		// Learn the node's data type: a write must send exactly it.
		if _, err := d.read(ctx, v); err != nil {
			return err
		}
		t = d.types[v.raw]
	}
	variant, err := toVariant(t, value)
	if err != nil {
		return fmt.Errorf("opcua %s: write %s: %w", d.cfg.url, v, err)
	}
	resp, err := d.client.Write(ctx, &ua.WriteRequest{NodesToWrite: []*ua.WriteValue{{
		NodeID: v.nodeID, AttributeID: ua.AttributeIDValue,
		Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: variant},
	}}})
	if err != nil {
		return d.lost("write", v, err)
	}
	if len(resp.Results) != 1 {
		return d.lost("write", v, fmt.Errorf("%d results for 1 node", len(resp.Results)))
	}
	if st := resp.Results[0]; st != ua.StatusOK {
		return fmt.Errorf("opcua %s: write %s: %w", d.cfg.url, v, st)
	}
	return nil
}

func (d *device) Subscribe(ctx context.Context, vis mapper.Visitor, fn func(any, error)) (bool, error) {
	v := vis.(*visitor)
	if !v.subscribe {
		return false, nil
	}
	if d.client == nil {
		return false, fmt.Errorf("opcua %s: %w", d.cfg.url, mapper.ErrDisconnected)
	}
	sub, err := d.subscription(ctx)
	if err != nil {
		return false, err
	}
	d.mu.Lock()
	d.next++
	handle := d.next
	d.handlers[handle] = func(val any, err error) {
		if ctx.Err() == nil {
			fn(val, err)
		}
	}
	d.mu.Unlock()
	req := opcua.NewMonitoredItemCreateRequestWithDefaults(v.nodeID, ua.AttributeIDValue, handle)
	req.RequestedParameters.SamplingInterval = float64(v.sampling) / float64(time.Millisecond)
	res, err := sub.Monitor(ctx, ua.TimestampsToReturnBoth, req)
	if err != nil {
		return false, d.lost("monitor", v, err)
	}
	if len(res.Results) != 1 || res.Results[0].StatusCode != ua.StatusOK {
		d.mu.Lock()
		delete(d.handlers, handle)
		d.mu.Unlock()
		if len(res.Results) == 1 {
			return false, fmt.Errorf("opcua %s: monitor %s: %w", d.cfg.url, v, res.Results[0].StatusCode)
		}
		return false, d.lost("monitor", v, fmt.Errorf("%d results for 1 item", len(res.Results)))
	}
	return true, nil
}

// subscription creates the device's one subscription and its reader.
func (d *device) subscription(ctx context.Context) (*opcua.Subscription, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sub != nil {
		return d.sub, nil
	}
	ch := make(chan *opcua.PublishNotificationData, 64)
	sub, err := d.client.Subscribe(ctx, &opcua.SubscriptionParameters{Interval: 100 * time.Millisecond}, ch)
	if err != nil {
		return nil, fmt.Errorf("opcua %s: create subscription: %w: %w", d.cfg.url, mapper.ErrDisconnected, err)
	}
	d.sub = sub
	d.readers.Add(1)
	done := d.ctx.Done()
	go func() {
		defer d.readers.Done()
		for {
			select {
			case <-done:
				return
			case n := <-ch:
				d.deliver(n)
			}
		}
	}()
	return sub, nil
}

func (d *device) deliver(n *opcua.PublishNotificationData) {
	d.mu.Lock()
	handlers := make([]func(any, error), 0, len(d.handlers))
	for _, h := range d.handlers {
		handlers = append(handlers, h)
	}
	d.mu.Unlock()
	if n.Error != nil {
		for _, h := range handlers {
			h(nil, fmt.Errorf("opcua %s: subscription: %w: %w", d.cfg.url, mapper.ErrDisconnected, n.Error))
		}
		return
	}
	dc, ok := n.Value.(*ua.DataChangeNotification)
	if !ok {
		return
	}
	for _, item := range dc.MonitoredItems {
		d.mu.Lock()
		h := d.handlers[item.ClientHandle]
		d.mu.Unlock()
		if h == nil || item.Value == nil {
			continue
		}
		if item.Value.Status != ua.StatusOK {
			h(nil, fmt.Errorf("opcua %s: monitored item: %w", d.cfg.url, item.Value.Status))
			continue
		}
		val, err := fromVariant(item.Value.Value)
		h(val, err)
	}
}
