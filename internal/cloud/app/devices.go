package app

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/kubeedge-go/kubeedge/internal/cloud/delivery"
	"github.com/kubeedge-go/kubeedge/internal/cloud/devicecontroller"
	"github.com/kubeedge-go/kubeedge/internal/cloud/hub"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// installDeviceCRDs installs the devices.kubeedge.io CRDs when the
// DeviceController is on.
func (c *CloudCore) installDeviceCRDs(ctx context.Context) error {
	if !c.cfg.Modules.DeviceController.Enable {
		return nil
	}
	if err := devicecontroller.InstallCRDs(ctx, c.Dynamic); err != nil {
		return fmt.Errorf("cloudcore: install device CRDs: %w", err)
	}
	return nil
}

// newDevices builds the DeviceController, or nil when it is off.
func (c *CloudCore) newDevices(enqueue func(node string, key wire.Resource)) (*devicecontroller.Controller, error) {
	dc := c.cfg.Modules.DeviceController
	if !dc.Enable {
		return nil, nil
	}
	return devicecontroller.New(devicecontroller.Config{
		StatusQPS: dc.StatusQPS, StatusBurst: dc.StatusBurst,
		StatusInterval: time.Duration(dc.StatusIntervalMillis) * time.Millisecond,
		Workers:        dc.Workers,
	}, devicecontroller.Deps{Dynamic: c.Dynamic, Enqueue: enqueue, Clock: c.clk, Logger: c.log})
}

// sources is what delivery sends: pods and their objects, and devices.
func (c *CloudCore) sources() delivery.Source {
	if c.Devices == nil {
		return c.Edges
	}
	return delivery.Composite{c.Edges, c.Devices}
}

// handleDeviceReport passes a twin report to the DeviceController, which
// answers once the statuses are written (so that the edge keeps the report
// until then).
func (h *edgeHandler) handleDeviceReport(s *hub.Session, m wire.Message) {
	err := h.devices.HandleReport(s.Node, m, func(content json.RawMessage) {
		ack := wire.NewAck(h.clock.Now(), wire.SourceCloudHub, m)
		ack.Content = content
		_ = s.Send(ack)
	})
	if err != nil {
		h.log.Warn("device report refused", "node", s.Node, "resource", m.Resource, "err", err)
		_ = s.Send(wire.NewError(h.clock.Now(), wire.SourceCloudHub, m.Header.ID, err.Error()))
	}
}
