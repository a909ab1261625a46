package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/cloud/delivery"
	"github.com/kubeedge-go/kubeedge/internal/cloud/devicecontroller"
	"github.com/kubeedge-go/kubeedge/internal/cloud/hub"
	"github.com/kubeedge-go/kubeedge/internal/cloud/nodes"
	"github.com/kubeedge-go/kubeedge/internal/cloud/stream"
	"github.com/kubeedge-go/kubeedge/internal/cloud/upstream"
	"github.com/kubeedge-go/kubeedge/internal/edgeapi"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// edgeHandler routes what edge sessions bring to the cloud components.
type edgeHandler struct {
	delivery *delivery.Delivery
	nodes    *nodes.Manager
	pods     *upstream.Writer
	pool     *upstream.Pool
	devices  *devicecontroller.Controller // nil when off
	stream   *stream.Server               // nil unless CloudStream is enabled
	clock    clock.PassiveClock
	log      *slog.Logger
}

var _ hub.Handler = (*edgeHandler)(nil)

func (h *edgeHandler) SessionStarted(s *hub.Session) {
	h.delivery.Connected(s.Node, s)
	h.nodes.Heartbeat(s.Node)
}

func (h *edgeHandler) SessionEnded(s *hub.Session) {
	h.delivery.Disconnected(s.Node, s)
	h.nodes.Forget(s.Node)
}

func (h *edgeHandler) Keepalive(s *hub.Session) { h.nodes.Heartbeat(s.Node) }

func (h *edgeHandler) Acked(s *hub.Session, parentID string) { h.delivery.Ack(s.Node, parentID) }

func (h *edgeHandler) HandleMessage(ctx context.Context, s *hub.Session, m wire.Message) {
	if txt, _ := m.ContentString(); m.Operation == wire.OpError && h.stream != nil && h.stream.EdgeRefused(s.Node, m.Header.ParentID, txt) {
		return // an edge refusing a stream request: the stream fails at once
	}
	if m.Resource.Type == wire.TypeTwin && h.devices != nil {
		h.handleDeviceReport(s, m)
		return
	}
	if job := h.podJob(s, m); job != nil {
		// Pod reports call the API server: off the session reader, bounded.
		h.pool.Submit(ctx, func(ctx context.Context) {
			content, err := job(ctx)
			h.reply(s, m, content, err)
		})
		return
	}
	h.reply(s, m, nil, h.handle(ctx, s, m))
}

// reply answers m: an error, the content of a query's answer, or an ack.
func (h *edgeHandler) reply(s *hub.Session, m wire.Message, content any, err error) {
	if err != nil {
		h.log.Warn("message from edge refused", "node", s.Node, "op", m.Operation, "resource", m.Resource, "err", err)
		_ = s.Send(wire.NewError(h.clock.Now(), wire.SourceCloudHub, m.Header.ID, err.Error()))
		return
	}
	if content == nil {
		_ = s.Send(wire.NewAck(h.clock.Now(), wire.SourceCloudHub, m))
		return
	}
	resp, err := wire.New(h.clock.Now(), wire.SourceCloudHub, m.Group, wire.OpResponse, m.Resource, content)
	if err != nil {
		_ = s.Send(wire.NewError(h.clock.Now(), wire.SourceCloudHub, m.Header.ID, err.Error()))
		return
	}
	resp.Header.ParentID = m.Header.ID
	_ = s.Send(resp)
}

// podJob decodes a pod-related report from the edge and returns the work it
// asks for, or nil when m is not one. A message that does not decode becomes
// a job that fails at once with the reason, so the edge hears why.
func (h *edgeHandler) podJob(s *hub.Session, m wire.Message) func(context.Context) (any, error) {
	r := m.Resource
	fail := func(err error) func(context.Context) (any, error) {
		return func(context.Context) (any, error) { return nil, err }
	}
	switch {
	case r.Type == wire.TypePodStatus && m.Operation == wire.OpUpdate:
		req, err := edgeapi.DecodePodStatusRequest(m.Content, r.Name)
		if err != nil {
			return fail(err)
		}
		return func(ctx context.Context) (any, error) { return nil, h.pods.PodStatus(ctx, s.Node, r.Namespace, req) }
	case r.Type == wire.TypePod && m.Operation == wire.OpDelete:
		d, err := edgeapi.DecodePodDeletion(m.Content)
		if err != nil {
			return fail(err)
		}
		return func(ctx context.Context) (any, error) {
			return nil, h.pods.DeletePod(ctx, s.Node, r.Namespace, r.Name, d)
		}
	case r.Type == wire.TypeEvent && (m.Operation == wire.OpInsert || m.Operation == wire.OpUpdate):
		var ev corev1.Event
		if err := json.Unmarshal(m.Content, &ev); err != nil {
			return fail(fmt.Errorf("content of %s is not an Event: %w", r, err))
		}
		if ev.Namespace != r.Namespace {
			return fail(fmt.Errorf("event names namespace %q but the route says %s", ev.Namespace, r))
		}
		return func(ctx context.Context) (any, error) { return nil, h.pods.Event(ctx, s.Node, &ev) }
	case r.Type == wire.TypeServiceAccountToken && m.Operation == wire.OpQuery:
		var req authenticationv1.TokenRequest
		if err := json.Unmarshal(m.Content, &req); err != nil {
			return fail(fmt.Errorf("content of %s is not a TokenRequest: %w", r, err))
		}
		return func(ctx context.Context) (any, error) {
			out, err := h.pods.Token(ctx, s.Node, r.Namespace, r.Name, &req)
			if err != nil {
				return nil, err
			}
			return out, nil
		}
	}
	return nil
}

func (h *edgeHandler) handle(ctx context.Context, s *hub.Session, m wire.Message) error {
	r := m.Resource
	// A node may only speak for itself.
	if (r.Type == wire.TypeNode || r.Type == wire.TypeNodeStatus) && r.Name != s.Node {
		return fmt.Errorf("node %q may not write %s", s.Node, r)
	}
	switch {
	case r.Type == wire.TypeNode && (m.Operation == wire.OpInsert || m.Operation == wire.OpUpdate):
		var n corev1.Node
		if err := json.Unmarshal(m.Content, &n); err != nil {
			return fmt.Errorf("content of %s is not a Node: %w", r, err)
		}
		return h.nodes.Register(ctx, s.Node, &n)
	case r.Type == wire.TypeNodeStatus && (m.Operation == wire.OpUpdate || m.Operation == wire.OpInsert):
		var st corev1.NodeStatus
		if err := json.Unmarshal(m.Content, &st); err != nil {
			return fmt.Errorf("content of %s is not a NodeStatus: %w", r, err)
		}
		h.nodes.UpdateStatus(s.Node, st)
		return nil
	}
	return fmt.Errorf("operation %q on %s is not supported from the edge", m.Operation, r.Type)
}
