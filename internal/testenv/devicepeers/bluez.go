package devicepeers

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// BlueZ is a simulated BlueZ: a private dbus-daemon and, on it, a Go
// implementation of the parts of the org.bluez D-Bus API that a GATT client
// uses (ObjectManager, Adapter1 discovery, Device1 connect/disconnect,
// GattService1, GattCharacteristic1 read/write/notify). This kernel has no
// Bluetooth, so no real adapter can be tested; this is the closest test
// possible. Point a client at it with DBUS_SYSTEM_BUS_ADDRESS=Address.
type BlueZ struct {
	Address string // D-Bus address of the private bus
	Adapter dbus.ObjectPath
	conn    *dbus.Conn

	adapterProps *props

	mu      sync.Mutex
	objects map[dbus.ObjectPath]*props // exported, by path and interface; guarded by mu
	hidden  []*FakeDevice              // appear on StartDiscovery; guarded by mu
}

// StartBlueZ starts a dbus-daemon with a bus of its own and serves the fake
// org.bluez with adapter hci0 on it, until the test ends.
func StartBlueZ(t testing.TB) *BlueZ {
	t.Helper()
	daemon := lookPath(t, "dbus-daemon", "dbus")
	dir := ShortDir(t)
	sock := filepath.Join(dir, "bus")
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path=`+sock+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`), 0o644); err != nil {
		t.Fatal(err)
	}
	p := start(t, "dbus-daemon", nil, "unix:path=", 10*time.Second, daemon, "--config-file="+conf, "--nofork", "--nopidfile", "--print-address=1")
	addr := strings.TrimSpace(firstLineWith(p.Output(), "unix:path="))
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatalf("connect to the test bus: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	reply, err := conn.RequestName("org.bluez", dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own org.bluez: %v %v", reply, err)
	}
	b := &BlueZ{Address: addr, Adapter: "/org/bluez/hci0", conn: conn, objects: map[dbus.ObjectPath]*props{}}
	if err := conn.Export(objectManager{b}, "/", "org.freedesktop.DBus.ObjectManager"); err != nil {
		t.Fatal(err)
	}
	b.adapterProps = b.export(b.Adapter, "org.bluez.Adapter1", adapter{b}, map[string]any{
		"Address": "00:11:22:33:44:55", "Name": "fake-hci0", "Powered": true, "Discovering": false,
	})
	return b
}

// export serves obj's methods and props as iface at path (one interface
// per path in this fake).
func (b *BlueZ) export(path dbus.ObjectPath, iface string, obj any, values map[string]any) *props {
	if obj != nil {
		if err := b.conn.Export(obj, path, iface); err != nil {
			panic(fmt.Sprintf("fake bluez: export %s %s: %v", path, iface, err)) // a bug in this test helper
		}
	}
	p := &props{conn: b.conn, path: path, iface: iface, values: map[string]any{}}
	for k, v := range values {
		p.values[k] = immutable(v)
	}
	if err := b.conn.Export(p, path, "org.freedesktop.DBus.Properties"); err != nil {
		panic(fmt.Sprintf("fake bluez: export props %s: %v", path, err))
	}
	b.mu.Lock()
	b.objects[path] = p
	b.mu.Unlock()
	return p
}

// props implements org.freedesktop.DBus.Properties for one interface.
// Values are never changed in place (a set stores a copy), so replies being
// encoded on other goroutines never see a half-written value.
type props struct {
	conn  *dbus.Conn
	path  dbus.ObjectPath
	iface string

	mu     sync.Mutex
	values map[string]any // guarded by mu
}

func immutable(v any) any {
	if b, ok := v.([]byte); ok {
		return append([]byte(nil), b...)
	}
	return v
}

// Get implements org.freedesktop.DBus.Properties.
func (p *props) Get(iface, name string) (dbus.Variant, *dbus.Error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.values[name]
	if iface != p.iface || !ok {
		return dbus.Variant{}, dbus.NewError("org.freedesktop.DBus.Error.InvalidArgs", []any{"no property " + iface + "." + name})
	}
	return dbus.MakeVariant(v), nil
}

// GetAll implements org.freedesktop.DBus.Properties.
func (p *props) GetAll(iface string) (map[string]dbus.Variant, *dbus.Error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]dbus.Variant{}
	if iface != p.iface {
		return out, nil
	}
	for k, v := range p.values {
		out[k] = dbus.MakeVariant(v)
	}
	return out, nil
}

// Set implements org.freedesktop.DBus.Properties: nothing is writable.
func (p *props) Set(iface, name string, _ dbus.Variant) *dbus.Error {
	return dbus.NewError("org.freedesktop.DBus.Error.PropertyReadOnly", []any{iface + "." + name + " is read-only"})
}

// SetMust changes a property and emits PropertiesChanged, as BlueZ does.
func (p *props) SetMust(iface, name string, v any) {
	v = immutable(v)
	p.mu.Lock()
	p.values[name] = v
	p.mu.Unlock()
	_ = p.conn.Emit(p.path, "org.freedesktop.DBus.Properties.PropertiesChanged", iface, map[string]dbus.Variant{name: dbus.MakeVariant(v)}, []string{})
}

// managed returns what GetManagedObjects reports.
func (b *BlueZ) managed() map[dbus.ObjectPath]map[string]map[string]dbus.Variant {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[dbus.ObjectPath]map[string]map[string]dbus.Variant{}
	for path, p := range b.objects {
		all, _ := p.GetAll(p.iface)
		out[path] = map[string]map[string]dbus.Variant{p.iface: all}
	}
	return out
}

type objectManager struct{ b *BlueZ }

// GetManagedObjects implements org.freedesktop.DBus.ObjectManager.
func (o objectManager) GetManagedObjects() (map[dbus.ObjectPath]map[string]map[string]dbus.Variant, *dbus.Error) {
	return o.b.managed(), nil
}

type adapter struct{ b *BlueZ }

// StartDiscovery makes hidden devices appear (InterfacesAdded).
func (a adapter) StartDiscovery() *dbus.Error {
	a.b.mu.Lock()
	hidden := a.b.hidden
	a.b.hidden = nil
	a.b.mu.Unlock()
	a.b.adapterProps.SetMust("org.bluez.Adapter1", "Discovering", true)
	for _, d := range hidden {
		a.b.publish(d)
	}
	return nil
}

// StopDiscovery implements org.bluez.Adapter1.
func (a adapter) StopDiscovery() *dbus.Error {
	a.b.adapterProps.SetMust("org.bluez.Adapter1", "Discovering", false)
	return nil
}

// FakeService is a GATT service of a fake device.
type FakeService struct {
	UUID  string
	Chars []*FakeChar
}

// FakeChar is a GATT characteristic. Flags are BlueZ's ("read", "write",
// "write-without-response", "notify").
type FakeChar struct {
	UUID  string
	Flags []string
	Init  []byte

	dev   *FakeDevice
	path  dbus.ObjectPath
	props *props

	mu     sync.Mutex
	value  []byte // guarded by mu
	writes int    // guarded by mu
}

// FakeDevice is a BLE peripheral known to the fake adapter.
type FakeDevice struct {
	b        *BlueZ
	Path     dbus.ObjectPath
	MAC      string
	services []FakeService
	props    *props
	mu       sync.Mutex
	connects int // guarded by mu
}

// AddDevice adds a peripheral. A hidden one shows up only once a client
// starts discovery, as an unknown device does in BlueZ.
func (b *BlueZ) AddDevice(mac, name string, hidden bool, services ...FakeService) *FakeDevice {
	path := dbus.ObjectPath(string(b.Adapter) + "/dev_" + strings.ReplaceAll(strings.ToUpper(mac), ":", "_"))
	d := &FakeDevice{b: b, Path: path, MAC: strings.ToUpper(mac), services: services}
	for si := range services {
		for _, c := range services[si].Chars {
			c.dev = d
			c.value = append([]byte(nil), c.Init...)
		}
	}
	if hidden {
		b.mu.Lock()
		b.hidden = append(b.hidden, d)
		b.mu.Unlock()
		return d
	}
	b.publish(d)
	return d
}

// publish exports a device with its services and characteristics and
// announces them with InterfacesAdded.
func (b *BlueZ) publish(d *FakeDevice) {
	d.props = b.export(d.Path, "org.bluez.Device1", fakeDeviceMethods{d}, map[string]any{
		"Address": d.MAC, "Name": "fake-" + d.MAC, "Adapter": b.Adapter, "Connected": false, "ServicesResolved": false,
	})
	b.added(d.Path, "org.bluez.Device1")
	for si, s := range d.services {
		sp := dbus.ObjectPath(fmt.Sprintf("%s/service%04x", d.Path, si+1))
		b.export(sp, "org.bluez.GattService1", nil, map[string]any{"UUID": s.UUID, "Device": d.Path, "Primary": true})
		b.added(sp, "org.bluez.GattService1")
		for ci, c := range s.Chars {
			c.path = dbus.ObjectPath(fmt.Sprintf("%s/char%04x", sp, ci+1))
			c.props = b.export(c.path, "org.bluez.GattCharacteristic1", fakeCharMethods{c}, map[string]any{
				"UUID": c.UUID, "Service": sp, "Value": c.value, "Flags": c.Flags, "Notifying": false,
			})
			b.added(c.path, "org.bluez.GattCharacteristic1")
		}
	}
}

func (b *BlueZ) added(path dbus.ObjectPath, iface string) {
	m := b.managed()[path]
	_ = b.conn.Emit("/", "org.freedesktop.DBus.ObjectManager.InterfacesAdded", path, map[string]map[string]dbus.Variant{iface: m[iface]})
}

// Connects returns how many times a client connected the device.
func (d *FakeDevice) Connects() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.connects
}

// Drop simulates a lost link: Connected becomes false.
func (d *FakeDevice) Drop() {
	d.props.SetMust("org.bluez.Device1", "ServicesResolved", false)
	d.props.SetMust("org.bluez.Device1", "Connected", false)
}

func (d *FakeDevice) connected() bool {
	v, err := d.props.Get("org.bluez.Device1", "Connected")
	return err == nil && v.Value() == true
}

type fakeDeviceMethods struct{ d *FakeDevice }

// Connect implements org.bluez.Device1.
func (m fakeDeviceMethods) Connect() *dbus.Error {
	m.d.mu.Lock()
	m.d.connects++
	m.d.mu.Unlock()
	m.d.props.SetMust("org.bluez.Device1", "Connected", true)
	m.d.props.SetMust("org.bluez.Device1", "ServicesResolved", true)
	return nil
}

// Disconnect implements org.bluez.Device1.
func (m fakeDeviceMethods) Disconnect() *dbus.Error {
	m.d.Drop()
	return nil
}

// Value returns the characteristic's current value.
func (c *FakeChar) Value() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.value...)
}

// Writes returns how many writes arrived.
func (c *FakeChar) Writes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

// SetValue changes the value as the peripheral would; subscribers get a
// notification (PropertiesChanged on Value) when notifying.
func (c *FakeChar) SetValue(v []byte) {
	c.mu.Lock()
	c.value = append([]byte(nil), v...)
	c.mu.Unlock()
	c.props.SetMust("org.bluez.GattCharacteristic1", "Value", v)
}

func (c *FakeChar) has(flag string) bool {
	for _, f := range c.Flags {
		if f == flag {
			return true
		}
	}
	return false
}

type fakeCharMethods struct{ c *FakeChar }

func notConnected() *dbus.Error {
	return dbus.NewError("org.bluez.Error.NotConnected", []any{"Not connected"})
}

// ReadValue implements org.bluez.GattCharacteristic1.
func (m fakeCharMethods) ReadValue(map[string]dbus.Variant) ([]byte, *dbus.Error) {
	if !m.c.dev.connected() {
		return nil, notConnected()
	}
	if !m.c.has("read") {
		return nil, dbus.NewError("org.bluez.Error.NotPermitted", []any{"Read not permitted"})
	}
	return m.c.Value(), nil
}

// WriteValue implements org.bluez.GattCharacteristic1.
func (m fakeCharMethods) WriteValue(v []byte, opts map[string]dbus.Variant) *dbus.Error {
	if !m.c.dev.connected() {
		return notConnected()
	}
	kind := "request"
	if t, ok := opts["type"]; ok {
		kind, _ = t.Value().(string)
	}
	if (kind == "command" && !m.c.has("write-without-response")) || (kind != "command" && !m.c.has("write")) {
		return dbus.NewError("org.bluez.Error.NotPermitted", []any{"Write not permitted"})
	}
	m.c.mu.Lock()
	m.c.writes++
	m.c.mu.Unlock()
	m.c.SetValue(v)
	return nil
}

// StartNotify implements org.bluez.GattCharacteristic1.
func (m fakeCharMethods) StartNotify() *dbus.Error {
	if !m.c.dev.connected() {
		return notConnected()
	}
	if !m.c.has("notify") {
		return dbus.NewError("org.bluez.Error.NotSupported", []any{"Notify not supported"})
	}
	m.c.props.SetMust("org.bluez.GattCharacteristic1", "Notifying", true)
	return nil
}

// StopNotify implements org.bluez.GattCharacteristic1.
func (m fakeCharMethods) StopNotify() *dbus.Error {
	m.c.props.SetMust("org.bluez.GattCharacteristic1", "Notifying", false)
	return nil
}
