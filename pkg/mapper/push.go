package mapper

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	pb "github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1"
)

// dataModel is what push methods publish, field for field KubeEdge's
// mapper-framework DataModel (its MQTT push marshals it without JSON tags,
// hence the capitalised names).
type dataModel struct {
	DeviceName   string
	PropertyName string
	Namespace    string
	Value        string
	Type         string
	TimeStamp    int64 // milliseconds since the epoch
}

type pushJob struct {
	method *pb.PushMethod
	data   dataModel
}

// pusher delivers property values to the pushMethod targets of the Device
// CRD (HTTP POST, MQTT publish) from a few workers, so a slow target never
// stalls device collection: when the queue is full, values are dropped and
// counted.
type pusher struct {
	q       chan pushJob
	workers int
	timeout time.Duration
	http    *http.Client
	log     *slog.Logger

	mu   sync.Mutex
	mqtt map[string]mqtt.Client // by broker address; guarded by mu

	sent, failed, dropped atomic.Int64
}

func newPusher(cfg *Config, log *slog.Logger) *pusher {
	return &pusher{
		q:       make(chan pushJob, cfg.PushQueue),
		workers: cfg.PushWorkers,
		timeout: cfg.CallTimeout,
		http:    &http.Client{},
		log:     log,
		mqtt:    map[string]mqtt.Client{},
	}
}

// validatePush checks a property's push method without I/O.
func validatePush(m *pb.PushMethod) error {
	if h := m.GetHttp(); h != nil {
		if _, err := httpURL(h); err != nil {
			return err
		}
	}
	if q := m.GetMqtt(); q != nil {
		if q.GetAddress() == "" || q.GetTopic() == "" {
			return fmt.Errorf("%w: pushMethod.mqtt needs address and topic", ErrConfig)
		}
		if q.GetQos() < 0 || q.GetQos() > 2 {
			return fmt.Errorf("%w: pushMethod.mqtt.qos %d (want 0, 1 or 2)", ErrConfig, q.GetQos())
		}
		u, err := url.Parse(q.GetAddress())
		if err != nil || u.Host == "" {
			return fmt.Errorf("%w: pushMethod.mqtt.address %q is not a broker URL like tcp://127.0.0.1:1883", ErrConfig, q.GetAddress())
		}
	}
	return nil
}

// httpURL builds the target as KubeEdge does (hostname, which may carry the
// scheme, then :port and requestpath).
func httpURL(h *pb.PushMethodHTTP) (string, error) {
	host := h.GetHostname()
	if host == "" {
		return "", fmt.Errorf("%w: pushMethod.http.hostname is empty", ErrConfig)
	}
	if !strings.Contains(host, "://") {
		host = "http://" + host
	}
	if h.GetPort() < 0 || h.GetPort() > 65535 {
		return "", fmt.Errorf("%w: pushMethod.http.port %d", ErrConfig, h.GetPort())
	}
	s := host
	if h.GetPort() != 0 {
		s += ":" + strconv.FormatInt(h.GetPort(), 10)
	}
	path := h.GetRequestpath()
	if path != "" && !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	s += path
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("%w: pushMethod.http gives the bad URL %q", ErrConfig, s)
	}
	return s, nil
}

// push queues a value; it never blocks.
func (p *pusher) push(m *pb.PushMethod, d dataModel) {
	select {
	case p.q <- pushJob{method: m, data: d}:
	default:
		p.dropped.Add(1)
	}
}

// run delivers until ctx is done, then disconnects the MQTT clients.
func (p *pusher) run(ctx context.Context) {
	var wg sync.WaitGroup
	for range p.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case j := <-p.q:
					if err := p.deliver(ctx, j); err != nil {
						p.failed.Add(1)
						p.log.Debug("push failed", "device", j.data.Namespace+"/"+j.data.DeviceName, "property", j.data.PropertyName, "err", err)
					} else {
						p.sent.Add(1)
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	wg.Wait()
	p.mu.Lock()
	for _, c := range p.mqtt {
		c.Disconnect(100)
	}
	p.mqtt = map[string]mqtt.Client{}
	p.mu.Unlock()
	p.http.CloseIdleConnections()
}

func (p *pusher) deliver(ctx context.Context, j pushJob) error {
	if h := j.method.GetHttp(); h != nil {
		return p.postHTTP(ctx, h, j.data)
	}
	if q := j.method.GetMqtt(); q != nil {
		return p.publishMQTT(q, j.data)
	}
	return nil
}

func (p *pusher) postHTTP(ctx context.Context, h *pb.PushMethodHTTP, d dataModel) error {
	target, err := httpURL(h)
	if err != nil {
		return err
	}
	timeout := p.timeout
	if h.GetTimeout() > 0 {
		timeout = time.Duration(h.GetTimeout()) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// KubeEdge's body: "<property>=<value>&time=<local time>".
	form := url.Values{}
	form.Set(d.PropertyName, d.Value)
	form.Set("time", time.UnixMilli(d.TimeStamp).Format("2006-01-02 15:04:05"))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("push http: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := p.http.Do(req)
	if err != nil {
		return fmt.Errorf("push http: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("push http: %s answered %s", target, resp.Status)
	}
	return nil
}

func (p *pusher) client(address string) mqtt.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.mqtt[address]; ok {
		return c
	}
	opts := mqtt.NewClientOptions().AddBroker(address).
		SetClientID(fmt.Sprintf("mapper-push-%d", time.Now().UnixNano())).
		SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectTimeout(p.timeout).SetWriteTimeout(p.timeout)
	c := mqtt.NewClient(opts)
	c.Connect() // with ConnectRetry it keeps trying in the background
	p.mqtt[address] = c
	return c
}

func (p *pusher) publishMQTT(q *pb.PushMethodMQTT, d dataModel) error {
	body, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("push mqtt: %w", err)
	}
	c := p.client(q.GetAddress())
	tok := c.Publish(q.GetTopic(), byte(q.GetQos()), q.GetRetained(), body)
	if !tok.WaitTimeout(p.timeout) {
		return fmt.Errorf("push mqtt: publish to %s timed out after %v", q.GetAddress(), p.timeout)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("push mqtt: %w", err)
	}
	return nil
}
