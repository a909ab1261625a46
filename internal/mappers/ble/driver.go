package ble

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/kubeedge-go/kubeedge/pkg/mapper"
)

// Protocol is the protocolName this driver serves.
const Protocol = "ble"

const (
	bluez       = "org.bluez"
	ifDevice    = "org.bluez.Device1"
	ifAdapter   = "org.bluez.Adapter1"
	ifService   = "org.bluez.GattService1"
	ifChar      = "org.bluez.GattCharacteristic1"
	ifProps     = "org.freedesktop.DBus.Properties"
	ifObjectMgr = "org.freedesktop.DBus.ObjectManager"
)

// Driver implements mapper.Driver for BLE GATT devices via BlueZ.
type Driver struct{}

// New returns a BLE driver.
func New() *Driver { return &Driver{} }

var _ mapper.Driver = (*Driver)(nil)

// NewDevice implements mapper.Driver.
func (*Driver) NewDevice(spec mapper.DeviceSpec) (mapper.Device, error) {
	p, err := parseProtocol(spec)
	if err != nil {
		return nil, err
	}
	return &device{cfg: p}, nil
}

// ParseVisitor implements mapper.Driver.
func (*Driver) ParseVisitor(p mapper.PropertySpec) (mapper.Visitor, error) {
	return parseVisitor(p)
}

// device is one BLE peripheral, over its own D-Bus connection.
type device struct {
	cfg     protocolConfig
	conn    *dbus.Conn
	chars   map[string]dbus.ObjectPath // by visitor key
	signals chan *dbus.Signal
	done    chan struct{} // closed when the signal loop has stopped

	mu        sync.Mutex
	path      dbus.ObjectPath                         // the device's BlueZ object; guarded by mu
	connected bool                                    // guarded by mu
	notify    map[dbus.ObjectPath]func([]byte, error) // guarded by mu
}

var (
	_ mapper.Device     = (*device)(nil)
	_ mapper.Subscriber = (*device)(nil)
	_ mapper.Stater     = (*device)(nil)
)

func (d *device) adapterPath() dbus.ObjectPath { return dbus.ObjectPath("/org/bluez/" + d.cfg.adapter) }

// dbusErr wraps a BlueZ error: errors of the link or of BlueZ itself are
// a lost connection; refusals of one characteristic are property errors.
func (d *device) dbusErr(op string, err error) error {
	var de dbus.Error
	if errors.As(err, &de) {
		switch de.Name {
		case "org.bluez.Error.NotPermitted", "org.bluez.Error.NotSupported", "org.bluez.Error.InvalidValueLength",
			"org.bluez.Error.NotAuthorized", "org.bluez.Error.InvalidOffset", "org.bluez.Error.InvalidArguments":
			return fmt.Errorf("ble %s: %s: %w", d.cfg.mac, op, err)
		}
	}
	return fmt.Errorf("ble %s: %s: %w: %w", d.cfg.mac, op, mapper.ErrDisconnected, err)
}

func (d *device) Connect(ctx context.Context) error {
	conn, err := dbus.ConnectSystemBus(dbus.WithContext(context.Background()))
	if err != nil {
		return fmt.Errorf("ble %s: system bus (BlueZ): %w", d.cfg.mac, err)
	}
	d.conn = conn
	d.chars = map[string]dbus.ObjectPath{}
	d.mu.Lock()
	d.notify = map[dbus.ObjectPath]func([]byte, error){}
	d.path = ""
	d.mu.Unlock()
	// The signal loop runs until the connection closes (Close).
	d.signals = make(chan *dbus.Signal, 64)
	conn.Signal(d.signals)
	found := make(chan dbus.ObjectPath, 1)
	d.done = make(chan struct{})
	go d.loop(found)
	ctx, cancel := context.WithTimeout(ctx, d.cfg.timeout)
	defer cancel()
	if err := conn.AddMatchSignalContext(ctx, dbus.WithMatchSender(bluez), dbus.WithMatchInterface(ifProps), dbus.WithMatchMember("PropertiesChanged")); err != nil {
		return d.dbusErr("watch properties", err)
	}
	if err := conn.AddMatchSignalContext(ctx, dbus.WithMatchSender(bluez), dbus.WithMatchInterface(ifObjectMgr), dbus.WithMatchMember("InterfacesAdded")); err != nil {
		return d.dbusErr("watch objects", err)
	}
	path, err := d.findDevice(ctx)
	if err != nil {
		return err
	}
	if path == "" {
		// Unknown to BlueZ: discover it.
		ad := conn.Object(bluez, d.adapterPath())
		if err := ad.CallWithContext(ctx, ifAdapter+".StartDiscovery", 0).Err; err != nil {
			return d.dbusErr("start discovery on "+d.cfg.adapter, err)
		}
		select {
		case path = <-found:
		case <-ctx.Done():
		}
		_ = ad.CallWithContext(context.WithoutCancel(ctx), ifAdapter+".StopDiscovery", 0).Err
		if path == "" {
			if path, err = d.findDevice(ctx); err != nil || path == "" {
				return fmt.Errorf("ble %s: not found by %s within %v", d.cfg.mac, d.cfg.adapter, d.cfg.timeout)
			}
		}
	}
	d.mu.Lock()
	d.path = path
	d.mu.Unlock()
	obj := conn.Object(bluez, path)
	if err := obj.CallWithContext(ctx, ifDevice+".Connect", 0).Err; err != nil {
		return d.dbusErr("connect", err)
	}
	// GATT objects exist once BlueZ has resolved the services.
	for {
		v, err := obj.GetProperty(ifDevice + ".ServicesResolved")
		if err == nil && v.Value() == true {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ble %s: services not resolved within %v: %w", d.cfg.mac, d.cfg.timeout, mapper.ErrDisconnected)
		case <-time.After(20 * time.Millisecond):
		}
	}
	d.mu.Lock()
	d.connected = true
	d.mu.Unlock()
	return nil
}

// findDevice looks the device up among BlueZ's objects.
func (d *device) findDevice(ctx context.Context) (dbus.ObjectPath, error) {
	objs, err := d.managed(ctx)
	if err != nil {
		return "", err
	}
	prefix := string(d.adapterPath()) + "/"
	for path, ifaces := range objs {
		if props, ok := ifaces[ifDevice]; ok && strings.HasPrefix(string(path), prefix) {
			if addr, _ := props["Address"].Value().(string); strings.EqualFold(addr, d.cfg.mac) {
				return path, nil
			}
		}
	}
	return "", nil
}

func (d *device) managed(ctx context.Context) (map[dbus.ObjectPath]map[string]map[string]dbus.Variant, error) {
	var objs map[dbus.ObjectPath]map[string]map[string]dbus.Variant
	if err := d.conn.Object(bluez, "/").CallWithContext(ctx, ifObjectMgr+".GetManagedObjects", 0).Store(&objs); err != nil {
		return nil, d.dbusErr("list BlueZ objects", err)
	}
	return objs, nil
}

// loop dispatches signals until the connection closes: a device appearing
// during discovery, notifications, and the link going down.
func (d *device) loop(found chan<- dbus.ObjectPath) {
	defer close(d.done)
	for sig := range d.signals {
		switch sig.Name {
		case ifObjectMgr + ".InterfacesAdded":
			if len(sig.Body) < 2 {
				continue
			}
			path, _ := sig.Body[0].(dbus.ObjectPath)
			ifaces, _ := sig.Body[1].(map[string]map[string]dbus.Variant)
			if props, ok := ifaces[ifDevice]; ok {
				if addr, _ := props["Address"].Value().(string); strings.EqualFold(addr, d.cfg.mac) {
					select {
					case found <- path:
					default:
					}
				}
			}
		case ifProps + ".PropertiesChanged":
			if len(sig.Body) < 2 {
				continue
			}
			iface, _ := sig.Body[0].(string)
			changed, _ := sig.Body[1].(map[string]dbus.Variant)
			d.mu.Lock()
			mine := sig.Path == d.path && d.path != ""
			d.mu.Unlock()
			switch {
			case iface == ifDevice && mine:
				if v, ok := changed["Connected"]; ok && v.Value() == false {
					d.linkLost()
				}
			case iface == ifChar:
				v, ok := changed["Value"]
				if !ok {
					continue
				}
				b, _ := v.Value().([]byte)
				d.mu.Lock()
				fn := d.notify[sig.Path]
				d.mu.Unlock()
				if fn != nil {
					fn(b, nil)
				}
			}
		}
	}
}

// linkLost marks the device disconnected and tells every subscriber.
func (d *device) linkLost() {
	d.mu.Lock()
	d.connected = false
	fns := make([]func([]byte, error), 0, len(d.notify))
	for _, fn := range d.notify {
		fns = append(fns, fn)
	}
	d.mu.Unlock()
	for _, fn := range fns {
		fn(nil, fmt.Errorf("ble %s: link lost: %w", d.cfg.mac, mapper.ErrDisconnected))
	}
}

// State implements mapper.Stater: BlueZ's view of the link.
func (d *device) State(context.Context) (mapper.State, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.connected {
		return mapper.StateDisconnected, nil
	}
	return mapper.StateOK, nil
}

// charPath finds a visitor's characteristic under the device.
func (d *device) charPath(ctx context.Context, v *visitor) (dbus.ObjectPath, error) {
	key := v.service + "/" + v.char
	if p, ok := d.chars[key]; ok {
		return p, nil
	}
	objs, err := d.managed(ctx)
	if err != nil {
		return "", err
	}
	d.mu.Lock()
	dev := d.path
	d.mu.Unlock()
	var hits []dbus.ObjectPath
	for path, ifaces := range objs {
		props, ok := ifaces[ifChar]
		if !ok || !strings.HasPrefix(string(path), string(dev)+"/") {
			continue
		}
		if u, _ := props["UUID"].Value().(string); !strings.EqualFold(u, v.char) {
			continue
		}
		if v.service != "" {
			sp, _ := props["Service"].Value().(dbus.ObjectPath)
			su, _ := objs[sp][ifService]["UUID"].Value().(string)
			if !strings.EqualFold(su, v.service) {
				continue
			}
		}
		hits = append(hits, path)
	}
	switch len(hits) {
	case 0:
		if v.service != "" {
			return "", fmt.Errorf("ble %s: no characteristic %s in service %s", d.cfg.mac, v.char, v.service)
		}
		return "", fmt.Errorf("ble %s: no characteristic %s", d.cfg.mac, v.char)
	case 1:
		d.chars[key] = hits[0]
		return hits[0], nil
	}
	return "", fmt.Errorf("ble %s: characteristic %s is in %d services; give serviceUUID", d.cfg.mac, v.char, len(hits))
}

func (d *device) alive() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == nil || !d.connected {
		return fmt.Errorf("ble %s: %w", d.cfg.mac, mapper.ErrDisconnected)
	}
	return nil
}

func (d *device) Read(ctx context.Context, vis mapper.Visitor) (any, error) {
	v := vis.(*visitor)
	if err := d.alive(); err != nil {
		return nil, err
	}
	path, err := d.charPath(ctx, v)
	if err != nil {
		return nil, err
	}
	var b []byte
	if err := d.conn.Object(bluez, path).CallWithContext(ctx, ifChar+".ReadValue", 0, map[string]dbus.Variant{}).Store(&b); err != nil {
		return nil, d.dbusErr("read "+v.String(), err)
	}
	val, err := v.codec.decode(b)
	if err != nil {
		return nil, fmt.Errorf("ble %s: read %s: %w", d.cfg.mac, v, err)
	}
	return val, nil
}

func (d *device) Write(ctx context.Context, vis mapper.Visitor, value any) error {
	v := vis.(*visitor)
	if err := d.alive(); err != nil {
		return err
	}
	b, err := v.codec.encode(value)
	if err != nil {
		return fmt.Errorf("ble %s: write %s: %w", d.cfg.mac, v, err)
	}
	path, err := d.charPath(ctx, v)
	if err != nil {
		return err
	}
	kind := "request"
	if v.command {
		kind = "command"
	}
	if err := d.conn.Object(bluez, path).CallWithContext(ctx, ifChar+".WriteValue", 0, b, map[string]dbus.Variant{"type": dbus.MakeVariant(kind)}).Err; err != nil {
		return d.dbusErr("write "+v.String(), err)
	}
	return nil
}

func (d *device) Subscribe(ctx context.Context, vis mapper.Visitor, fn func(any, error)) (bool, error) {
	v := vis.(*visitor)
	if !v.notify {
		return false, nil
	}
	if err := d.alive(); err != nil {
		return false, err
	}
	path, err := d.charPath(ctx, v)
	if err != nil {
		return false, err
	}
	d.mu.Lock()
	d.notify[path] = func(b []byte, err error) {
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			fn(nil, err)
			return
		}
		fn(v.codec.decode(b))
	}
	d.mu.Unlock()
	if err := d.conn.Object(bluez, path).CallWithContext(ctx, ifChar+".StartNotify", 0).Err; err != nil {
		d.mu.Lock()
		delete(d.notify, path)
		d.mu.Unlock()
		return false, d.dbusErr("start notifications of "+v.String(), err)
	}
	return true, nil
}

func (d *device) Close() error {
	if d.conn == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.timeout)
	defer cancel()
	d.mu.Lock()
	paths := make([]dbus.ObjectPath, 0, len(d.notify))
	for p := range d.notify {
		paths = append(paths, p)
	}
	d.notify = nil
	connected, dev := d.connected, d.path
	d.connected, d.path = false, ""
	d.mu.Unlock()
	for _, p := range paths {
		_ = d.conn.Object(bluez, p).CallWithContext(ctx, ifChar+".StopNotify", 0).Err
	}
	var err error
	if connected && dev != "" {
		err = d.conn.Object(bluez, dev).CallWithContext(ctx, ifDevice+".Disconnect", 0).Err
	}
	cerr := d.conn.Close()
	<-d.done
	d.conn = nil
	if err != nil {
		return fmt.Errorf("ble %s: disconnect: %w", d.cfg.mac, err)
	}
	if cerr != nil {
		return fmt.Errorf("ble %s: close bus: %w", d.cfg.mac, cerr)
	}
	return nil
}
