package app

import (
	"context"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/kubeedge-go/kubeedge/internal/edge/devicetwin"
	"github.com/kubeedge-go/kubeedge/internal/edge/dmi"
	"github.com/kubeedge-go/kubeedge/internal/edge/eventbus"
	"github.com/kubeedge-go/kubeedge/internal/store"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// Devices are the device components of edgecore; each is nil when its
// module is disabled.
type Devices struct {
	Twin *devicetwin.DeviceTwin
	Bus  *eventbus.EventBus
	DMI  *dmi.Server
}

// newDevices builds DeviceTwin, EventBus and the DMI server on the opened
// store. The twin reports through EdgeHub; the bus publishes the twin's
// events; the DMI server hears of every device change.
func (e *EdgeCore) newDevices() error {
	m := e.cfg.Modules
	if !m.DeviceTwin.Enable {
		return nil
	}
	d := &e.Devices
	var err error
	d.Twin, err = devicetwin.New(devicetwin.Config{
		NodeName:     e.cfg.NodeName(),
		SyncInterval: time.Duration(m.DeviceTwin.SyncIntervalMillis) * time.Millisecond,
		AckTimeout:   time.Duration(m.DeviceTwin.AckTimeoutSeconds) * time.Second,
		ReportBatch:  m.DeviceTwin.ReportBatch,
	}, devicetwin.Deps{
		Store:  e.Store,
		Uplink: e.Hub,
		Publish: func(p devicetwin.Publication) {
			if d.Bus != nil {
				d.Bus.Publish(p)
			}
		},
		Changed: func(id string) {
			if d.DMI != nil {
				d.DMI.DeviceChanged(id)
			}
		},
		Clock:  e.clk,
		Logger: e.log,
	})
	if err != nil {
		return err
	}
	if b := m.EventBus; b.Enable {
		if d.Bus, err = eventbus.New(eventbus.Config{
			NodeName: e.cfg.NodeName(), Mode: b.MqttMode,
			InternalAddr: b.InternalAddr(), ExternalURL: b.MqttServerExternal,
			ClientID: b.MqttSubClientID, Username: b.MqttUsername, Password: b.MqttPassword,
			QoS: byte(b.MqttQOS),
		}, eventbus.Deps{Handler: d.Twin, Logger: e.log}); err != nil {
			return err
		}
	}
	if x := m.DMI; x.Enable {
		if d.DMI, err = dmi.New(dmi.Config{Socket: x.Socket, ReportQPS: x.ReportQPS, ReportBurst: x.ReportBurst},
			dmi.Deps{Twin: d.Twin, Logger: e.log}); err != nil {
			return err
		}
	}
	return nil
}

// runDevices runs the device components in g.
func (e *EdgeCore) runDevices(ctx context.Context, g *errgroup.Group) {
	d := e.Devices
	if d.Twin != nil {
		g.Go(func() error { return d.Twin.Run(ctx) })
	}
	if d.Bus != nil {
		g.Go(func() error { return d.Bus.Run(ctx) })
	}
	if d.DMI != nil {
		g.Go(func() error { return d.DMI.Run(ctx) })
	}
}

// devicesChanged passes devices and models to DeviceTwin.
func (e *EdgeCore) devicesChanged(ch store.Change) {
	if e.Devices.Twin != nil {
		e.Devices.Twin.Notify(ch)
	}
}

// cloudConnected tells DeviceTwin about connectivity.
func (e *EdgeCore) cloudConnected(up bool) {
	if e.Devices.Twin != nil {
		e.Devices.Twin.SetConnected(up)
	}
}

// cloudAcked passes the cloud's responses to DeviceTwin (the only
// component that waits for acknowledgements of what it uploads).
func (e *EdgeCore) cloudAcked(m wire.Message) {
	if e.Devices.Twin != nil {
		e.Devices.Twin.HandleAck(m)
	}
}
