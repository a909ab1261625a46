package mapper

import (
	"context"
	"fmt"
	"sync"

	"github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1/convert"
)

// fakeDriver is an in-memory protocol for SDK tests: protocol configData
// {"addr": string}, visitor configData {"reg": string, "subscribe": bool}.
type fakeDriver struct {
	mu      sync.Mutex
	regs    map[string]map[string]any // addr -> reg -> value; guarded by mu
	down    map[string]bool           // addr -> connect fails; guarded by mu
	drop    map[string]bool           // addr -> next read reports a lost connection; guarded by mu
	broken  map[string]error          // reg -> read error; guarded by mu
	ro      map[string]bool           // reg -> writes fail; guarded by mu
	subs    map[string][]func(any, error)
	connect map[string]int // addr -> successful connects; guarded by mu
}

func newFakeDriver() *fakeDriver {
	return &fakeDriver{
		regs: map[string]map[string]any{}, down: map[string]bool{}, drop: map[string]bool{},
		broken: map[string]error{}, ro: map[string]bool{}, subs: map[string][]func(any, error){}, connect: map[string]int{},
	}
}

func (f *fakeDriver) set(addr, reg string, v any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.regs[addr] == nil {
		f.regs[addr] = map[string]any{}
	}
	f.regs[addr][reg] = v
}

func (f *fakeDriver) get(addr, reg string) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.regs[addr][reg]
}

func (f *fakeDriver) connects(addr string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.connect[addr]
}

// notify pushes a value to every subscriber of reg.
func (f *fakeDriver) notify(reg string, v any) {
	f.mu.Lock()
	fns := append([]func(any, error){}, f.subs[reg]...)
	f.mu.Unlock()
	for _, fn := range fns {
		fn(v, nil)
	}
}

type fakeVisitor struct {
	reg       string
	subscribe bool
}

func (f *fakeDriver) NewDevice(d DeviceSpec) (Device, error) {
	c := convert.NewConfig("protocol configData", d.ConfigData)
	addr := c.String("addr", convert.Required)
	if err := c.Err(); err != nil {
		return nil, err
	}
	return &fakeDevice{f: f, addr: addr}, nil
}

func (f *fakeDriver) ParseVisitor(p PropertySpec) (Visitor, error) {
	c := convert.NewConfig(fmt.Sprintf("visitor configData of property %q", p.Name), p.VisitorConfig)
	v := fakeVisitor{reg: c.String("reg", convert.Required), subscribe: c.BoolDefault("subscribe", false)}
	return v, c.Err()
}

type fakeDevice struct {
	f         *fakeDriver
	addr      string
	connected bool
}

func (d *fakeDevice) Connect(context.Context) error {
	d.f.mu.Lock()
	defer d.f.mu.Unlock()
	if d.f.down[d.addr] {
		return fmt.Errorf("fake %s: connection refused", d.addr)
	}
	d.connected = true
	d.f.connect[d.addr]++
	return nil
}

func (d *fakeDevice) Read(_ context.Context, v Visitor) (any, error) {
	fv := v.(fakeVisitor)
	d.f.mu.Lock()
	defer d.f.mu.Unlock()
	if d.f.drop[d.addr] {
		d.f.drop[d.addr] = false
		return nil, fmt.Errorf("fake %s: %w", d.addr, ErrDisconnected)
	}
	if err := d.f.broken[fv.reg]; err != nil {
		return nil, err
	}
	val, ok := d.f.regs[d.addr][fv.reg]
	if !ok {
		return nil, fmt.Errorf("fake %s: no register %q", d.addr, fv.reg)
	}
	return val, nil
}

func (d *fakeDevice) Write(_ context.Context, v Visitor, value any) error {
	fv := v.(fakeVisitor)
	d.f.mu.Lock()
	defer d.f.mu.Unlock()
	if d.f.ro[fv.reg] {
		return fmt.Errorf("fake %s: register %q is not writable", d.addr, fv.reg)
	}
	if d.f.regs[d.addr] == nil {
		d.f.regs[d.addr] = map[string]any{}
	}
	d.f.regs[d.addr][fv.reg] = value
	return nil
}

func (d *fakeDevice) Subscribe(ctx context.Context, v Visitor, fn func(any, error)) (bool, error) {
	fv := v.(fakeVisitor)
	if !fv.subscribe {
		return false, nil
	}
	d.f.mu.Lock()
	d.f.subs[fv.reg] = append(d.f.subs[fv.reg], fn)
	d.f.mu.Unlock()
	return true, nil
}

func (d *fakeDevice) Close() error {
	d.connected = false
	d.f.mu.Lock()
	d.f.subs = map[string][]func(any, error){}
	d.f.mu.Unlock()
	return nil
}

var (
	_ Driver     = (*fakeDriver)(nil)
	_ Subscriber = (*fakeDevice)(nil)
)
