package mapper

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1"
	"github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1/convert"
)

// ErrConfig marks a device or property whose configuration the mapper
// cannot use; the message says which part and why.
var ErrConfig = errors.New("mapper: invalid device configuration")

// defaultNamespace stands in for an empty namespace: KubeEdge edgecores
// before v1.17 sent none.
const defaultNamespace = "default"

// objKey names a device or model inside the mapper.
type objKey struct{ ns, name string }

func (k objKey) String() string { return k.ns + "/" + k.name }

func keyOf(ns, name string) objKey {
	if ns == "" {
		ns = defaultNamespace
	}
	return objKey{ns: ns, name: name}
}

// propPlan is one property ready to run.
type propPlan struct {
	spec    PropertySpec
	rng     convert.Range
	collect time.Duration
	report  time.Duration
	push    *pb.PushMethod
	visitor Visitor
	// err is set when this property cannot run (its visitor or model entry
	// is wrong); the others still run.
	err error
}

// devicePlan is a device joined with its model and parsed by the driver.
type devicePlan struct {
	key   objKey
	spec  DeviceSpec
	props []*propPlan
	dev   Device
	// err is set when the whole device cannot run.
	err error
}

// buildPlan parses a device against its model. model may be nil (not yet
// received). It never does I/O.
func buildPlan(cfg *Config, drv Driver, d *pb.Device, model *pb.DeviceModel) *devicePlan {
	k := keyOf(d.GetNamespace(), d.GetName())
	p := &devicePlan{key: k, spec: DeviceSpec{
		Namespace:    k.ns,
		Name:         k.name,
		ProtocolName: d.GetSpec().GetProtocol().GetProtocolName(),
		ConfigData:   d.GetSpec().GetProtocol().GetConfigData().GetData(),
	}}
	modelProps := map[string]*pb.ModelProperty{}
	for _, mp := range model.GetSpec().GetProperties() {
		modelProps[mp.GetName()] = mp
	}
	switch {
	case d.GetSpec() == nil:
		p.err = fmt.Errorf("%w: device %s has no spec", ErrConfig, k)
	case model == nil:
		p.err = fmt.Errorf("%w: device model %q of device %s is unknown to the mapper", ErrConfig, d.GetSpec().GetDeviceModelReference(), k)
	case p.spec.ProtocolName != cfg.Protocol:
		p.err = fmt.Errorf("%w: device %s uses protocol %q but this mapper serves %q", ErrConfig, k, p.spec.ProtocolName, cfg.Protocol)
	}
	seen := map[string]bool{}
	for _, dp := range d.GetSpec().GetProperties() {
		pp := &propPlan{
			spec: PropertySpec{
				Device:          p.spec,
				Name:            dp.GetName(),
				VisitorProtocol: dp.GetVisitors().GetProtocolName(),
				VisitorConfig:   dp.GetVisitors().GetConfigData().GetData(),
			},
			collect: cycle(dp.GetCollectCycle(), cfg.DefaultCollectCycle, cfg.MinCycle),
			report:  cycle(dp.GetReportCycle(), cfg.DefaultReportCycle, cfg.MinCycle),
			push:    dp.GetPushMethod(),
		}
		p.props = append(p.props, pp)
		if seen[dp.GetName()] {
			pp.err = fmt.Errorf("%w: property %q is listed twice", ErrConfig, dp.GetName())
			continue
		}
		seen[dp.GetName()] = true
		if p.err != nil {
			continue
		}
		mp, ok := modelProps[dp.GetName()]
		if !ok {
			pp.err = fmt.Errorf("%w: property %q is not in device model %q", ErrConfig, dp.GetName(), model.GetName())
			continue
		}
		t, err := convert.ParseType(mp.GetType())
		if err != nil {
			pp.err = fmt.Errorf("%w: property %q: %w", ErrConfig, dp.GetName(), err)
			continue
		}
		pp.spec.Type = t
		switch mp.GetAccessMode() {
		case "ReadOnly":
			pp.spec.ReadOnly = true
		case "ReadWrite", "":
		default:
			pp.err = fmt.Errorf("%w: property %q: accessMode %q (want ReadWrite or ReadOnly)", ErrConfig, dp.GetName(), mp.GetAccessMode())
			continue
		}
		if pp.rng, err = convert.ParseRange(mp.GetMinimum(), mp.GetMaximum()); err != nil {
			pp.err = fmt.Errorf("%w: property %q: %w", ErrConfig, dp.GetName(), err)
			continue
		}
		if pp.push != nil && pp.push.GetHttp() != nil && pp.push.GetMqtt() != nil {
			pp.err = fmt.Errorf("%w: property %q: pushMethod has both http and mqtt", ErrConfig, dp.GetName())
			continue
		}
		if pp.visitor, err = drv.ParseVisitor(pp.spec); err != nil {
			pp.err = fmt.Errorf("%w: property %q: %w", ErrConfig, dp.GetName(), err)
		}
	}
	if p.err == nil {
		dev, err := drv.NewDevice(p.spec)
		if err != nil {
			p.err = fmt.Errorf("%w: device %s: %w", ErrConfig, k, err)
		} else {
			p.dev = dev
		}
	}
	return p
}

// cycle converts a nanosecond collect/report cycle, applying the default
// for 0 and the floor.
func cycle(ns int64, def, floor time.Duration) time.Duration {
	d := time.Duration(ns)
	if d <= 0 {
		d = def
	}
	if d < floor {
		d = floor
	}
	return d
}

// desiredOf returns each property's desired value: spec.properties[].desired,
// or else the status twin's observedDesired (which is what KubeEdge's
// mappers read), so both kinds of edgecore work.
func desiredOf(d *pb.Device) map[string]string {
	out := map[string]string{}
	for _, t := range d.GetStatus().GetTwins() {
		if v := t.GetObservedDesired().GetValue(); v != "" {
			out[t.GetPropertyName()] = v
		}
	}
	for _, p := range d.GetSpec().GetProperties() {
		if v := p.GetDesired().GetValue(); v != "" {
			out[p.GetName()] = v
		}
	}
	return out
}

// sameButDesired reports whether two versions of a device differ only in
// desired values and status, so that an update can keep the connection.
func sameButDesired(a, b *pb.Device) bool {
	strip := func(d *pb.Device) *pb.Device {
		c := proto.Clone(d).(*pb.Device)
		c.Status = nil
		for _, p := range c.GetSpec().GetProperties() {
			p.Desired = nil
		}
		return c
	}
	return proto.Equal(strip(a), strip(b))
}

// lowerType is the type string KubeEdge puts in twin metadata.
func lowerType(t convert.Type) string { return strings.ToLower(string(t)) }
