package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/cloud/delivery"
	"github.com/kubeedge-go/kubeedge/internal/cloud/hub"
	"github.com/kubeedge-go/kubeedge/internal/cloud/nodes"
	"github.com/kubeedge-go/kubeedge/internal/cloud/stream"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// edgeHandler routes what edge sessions bring to the cloud components.
type edgeHandler struct {
	delivery *delivery.Delivery
	nodes    *nodes.Manager
	stream   *stream.Server // nil unless CloudStream is enabled
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
	if err := h.handle(ctx, s, m); err != nil {
		h.log.Warn("message from edge refused", "node", s.Node, "op", m.Operation, "resource", m.Resource, "err", err)
		_ = s.Send(wire.NewError(h.clock.Now(), wire.SourceCloudHub, m.Header.ID, err.Error()))
		return
	}
	_ = s.Send(wire.NewAck(h.clock.Now(), wire.SourceCloudHub, m))
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
