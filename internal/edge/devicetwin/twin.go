package devicetwin

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/kubeedge-go/kubeedge/internal/wire"
	"github.com/kubeedge-go/kubeedge/pkg/apis/devices/v1beta1"
)

// Errors of twin writes; UpdateError wraps one with a reason.
var (
	ErrUnknownDevice = errors.New("devicetwin: unknown device")
	ErrNoModel       = errors.New("devicetwin: device model not on this node")
	ErrInvalid       = errors.New("devicetwin: invalid value")
	ErrConflict      = errors.New("devicetwin: version conflict")
	ErrReadOnly      = errors.New("devicetwin: property is read-only")
)

// UpdateError is a refused write: Kind is one of the errors above.
type UpdateError struct {
	Kind   error
	Reason string
}

func (e *UpdateError) Error() string { return e.Reason }
func (e *UpdateError) Unwrap() error { return e.Kind }

// Code is the result code for e.
func (e *UpdateError) Code() int {
	switch {
	case errors.Is(e.Kind, ErrUnknownDevice), errors.Is(e.Kind, ErrNoModel):
		return CodeNotFound
	case errors.Is(e.Kind, ErrConflict):
		return CodeConflict
	}
	return CodeBadRequest
}

func refuse(kind error, format string, args ...any) *UpdateError {
	return &UpdateError{Kind: kind, Reason: fmt.Sprintf(format, args...)}
}

// valueState is a persisted value.
type valueState struct {
	Value     string            `json:"value"`
	Timestamp int64             `json:"ts,omitempty"` // ms since the epoch
	Metadata  map[string]string `json:"md,omitempty"` // from mappers
}

func (v *valueState) clone() *valueState {
	if v == nil {
		return nil
	}
	c := *v
	c.Metadata = maps.Clone(v.Metadata)
	return &c
}

// propState is one property's twin.
type propState struct {
	Expected        *valueState `json:"expected,omitempty"`
	Actual          *valueState `json:"actual,omitempty"`
	ObservedDesired *valueState `json:"observedDesired,omitempty"`
	ExpectedVersion TwinVersion `json:"expectedVersion"`
	ActualVersion   TwinVersion `json:"actualVersion"`
	// CloudDesired is the last desired value read from Device.spec; only a
	// change of it counts as a cloud write of expected (merge rule 1).
	CloudDesired *string `json:"cloudDesired,omitempty"`
}

func (p *propState) clone() *propState {
	c := *p
	c.Expected, c.Actual, c.ObservedDesired = p.Expected.clone(), p.Actual.clone(), p.ObservedDesired.clone()
	if p.CloudDesired != nil {
		s := *p.CloudDesired
		c.CloudDesired = &s
	}
	return &c
}

// twinDoc is everything DeviceTwin keeps about one device, persisted as one
// store object (type "devicetwin").
type twinDoc struct {
	Props      map[string]*propState `json:"props"`
	State      string                `json:"state,omitempty"`
	LastOnline string                `json:"lastOnline,omitempty"`
	// Seq counts changes the cloud must see (actual, observed desired,
	// state); Synced is the highest Seq the cloud acknowledged.
	Seq    int64 `json:"seq"`
	Synced int64 `json:"synced"`
}

func newDoc() *twinDoc { return &twinDoc{Props: map[string]*propState{}} }

func (d *twinDoc) clone() *twinDoc {
	c := *d
	c.Props = make(map[string]*propState, len(d.Props))
	for k, p := range d.Props {
		c.Props[k] = p.clone()
	}
	return &c
}

func (d *twinDoc) prop(name string) *propState {
	p := d.Props[name]
	if p == nil {
		p = &propState{}
		d.Props[name] = p
	}
	return p
}

// msgTwin renders a property as KubeEdge's twin JSON.
func (p *propState) msgTwin(mp v1beta1.ModelProperty) *MsgTwin {
	t := &MsgTwin{
		Expected: p.Expected.msg(), Actual: p.Actual.msg(),
		ExpectedVersion: &TwinVersion{CloudVersion: p.ExpectedVersion.CloudVersion, EdgeVersion: p.ExpectedVersion.EdgeVersion},
		ActualVersion:   &TwinVersion{CloudVersion: p.ActualVersion.CloudVersion, EdgeVersion: p.ActualVersion.EdgeVersion},
		Optional:        new(bool),
		Metadata:        &TypeMetadata{Type: string(mp.Type)},
	}
	return t
}

func (v *valueState) msg() *TwinValue {
	if v == nil {
		return nil
	}
	s := v.Value
	return &TwinValue{Value: &s, Metadata: &ValueMetadata{Timestamp: v.Timestamp}}
}

// twinUpdate is the outcome of an accepted write.
type twinUpdate struct {
	changed  []string              // property names whose twin changed, sorted
	before   map[string]*propState // their state before (nil if new)
	reported bool                  // the cloud must see it (Seq bumped)
}

// applyTwinUpdate applies a device app's twin/update to doc, all or nothing:
// every property is checked (known, writable for expected, value of the
// model's type and range, version current if one is given) before any is
// changed.
//
// Versions: a write that carries expected_version or actual_version must
// carry the current one, as returned by twin/get or the last result
// (compare and swap); a stale one is refused with ErrConflict. Writes
// without versions are applied unconditionally, as in KubeEdge.
func applyTwinUpdate(doc *twinDoc, model *v1beta1.DeviceModel, upd map[string]*MsgTwin, now time.Time) (twinUpdate, *UpdateError) {
	names := slices.Sorted(maps.Keys(upd))
	for _, name := range names {
		t := upd[name]
		mp, ok := model.Property(name)
		if !ok {
			return twinUpdate{}, refuse(ErrInvalid, "property %q is not in device model %q", name, model.Name)
		}
		cur := doc.Props[name]
		if cur == nil {
			cur = &propState{}
		}
		if t.Expected != nil {
			if mp.AccessMode == v1beta1.ReadOnly {
				return twinUpdate{}, refuse(ErrReadOnly, "property %q is ReadOnly: it has no expected value", name)
			}
			if err := checkValue(mp, *t.Expected.Value); err != nil {
				return twinUpdate{}, refuse(ErrInvalid, "expected: %v", err)
			}
			if v := t.ExpectedVersion; v != nil && *v != cur.ExpectedVersion {
				return twinUpdate{}, refuse(ErrConflict, "property %q: expected_version {cloud:%d, edge:%d} is stale, the current one is {cloud:%d, edge:%d}; read the twin and retry",
					name, v.CloudVersion, v.EdgeVersion, cur.ExpectedVersion.CloudVersion, cur.ExpectedVersion.EdgeVersion)
			}
		}
		if t.Actual != nil {
			if err := checkValue(mp, *t.Actual.Value); err != nil {
				return twinUpdate{}, refuse(ErrInvalid, "actual: %v", err)
			}
			if v := t.ActualVersion; v != nil && v.EdgeVersion != cur.ActualVersion.EdgeVersion {
				return twinUpdate{}, refuse(ErrConflict, "property %q: actual_version edge %d is stale, the current one is %d; read the twin and retry",
					name, v.EdgeVersion, cur.ActualVersion.EdgeVersion)
			}
		}
	}
	out := twinUpdate{before: map[string]*propState{}}
	ms := now.UnixMilli()
	for _, name := range names {
		t := upd[name]
		var before *propState
		if p := doc.Props[name]; p != nil {
			before = p.clone()
		}
		p := doc.prop(name)
		changed := false
		if t.Expected != nil && (p.Expected == nil || p.Expected.Value != *t.Expected.Value) {
			p.Expected = &valueState{Value: *t.Expected.Value, Timestamp: valueTime(t.Expected, ms)}
			p.ExpectedVersion.EdgeVersion++
			changed = true
		}
		if t.Actual != nil && (p.Actual == nil || p.Actual.Value != *t.Actual.Value) {
			p.Actual = &valueState{Value: *t.Actual.Value, Timestamp: valueTime(t.Actual, ms)}
			p.ActualVersion.EdgeVersion++
			out.reported = true
			changed = true
		}
		if changed {
			out.changed = append(out.changed, name)
			out.before[name] = before
		}
	}
	if out.reported {
		doc.Seq++
	}
	return out, nil
}

func valueTime(v *TwinValue, now int64) int64 {
	if v.Metadata != nil && v.Metadata.Timestamp > 0 {
		return v.Metadata.Timestamp
	}
	return now
}

// Report is what a mapper reports for one property.
type Report struct {
	Property string
	// Reported is the value read from the device; nil leaves it unchanged.
	Reported *string
	// ObservedDesired is the desired value the mapper last applied ("" with
	// an error in ObservedMetadata when applying failed).
	ObservedDesired *string
	// Metadata (timestamp, type, error...) from the mapper.
	Metadata map[string]string
	// ObservedMetadata is the mapper's metadata of ObservedDesired; its
	// "error" says why the desired value could not be applied.
	ObservedMetadata map[string]string
}

// errorOf is the "error" entry of mapper metadata. Only it is compared: the
// mapper's timestamps change every cycle and must not cause writes.
func errorOf(md map[string]string) string { return md["error"] }

// readFailed reports whether r carries a read error instead of a value.
func readFailed(r Report) bool { return *r.Reported == "" && errorOf(r.Metadata) != "" }

func stateError(v *valueState) string {
	if v == nil {
		return ""
	}
	return errorOf(v.Metadata)
}

// applyReports applies a mapper's reports, all or nothing. Values equal to
// what is stored change nothing, so a mapper reporting an unchanged value
// every cycle causes no store or apiserver writes.
func applyReports(doc *twinDoc, model *v1beta1.DeviceModel, reports []Report, now time.Time) (twinUpdate, *UpdateError) {
	for _, r := range reports {
		mp, ok := model.Property(r.Property)
		if !ok {
			return twinUpdate{}, refuse(ErrInvalid, "property %q is not in device model %q", r.Property, model.Name)
		}
		if r.Reported != nil && !readFailed(r) {
			if err := checkValue(mp, *r.Reported); err != nil {
				return twinUpdate{}, refuse(ErrInvalid, "reported: %v", err)
			}
		}
	}
	out := twinUpdate{before: map[string]*propState{}}
	ms := now.UnixMilli()
	for _, r := range reports {
		var before *propState
		if p := doc.Props[r.Property]; p != nil {
			before = p.clone()
		}
		p := doc.prop(r.Property)
		changed := false
		if r.Reported != nil && readFailed(r) {
			// No value: the device could not be read. The last value stays,
			// marked with the error, so the cloud sees why it is stale.
			if p.Actual == nil {
				p.Actual = &valueState{}
			}
			if stateError(p.Actual) != errorOf(r.Metadata) {
				md := maps.Clone(p.Actual.Metadata)
				if md == nil {
					md = map[string]string{}
				}
				md["error"] = errorOf(r.Metadata)
				p.Actual = &valueState{Value: p.Actual.Value, Timestamp: p.Actual.Timestamp, Metadata: md}
				changed = true
			}
		} else if r.Reported != nil && (p.Actual == nil || p.Actual.Value != *r.Reported || stateError(p.Actual) != errorOf(r.Metadata)) {
			p.Actual = &valueState{Value: *r.Reported, Timestamp: metaTime(r.Metadata, ms), Metadata: maps.Clone(r.Metadata)}
			p.ActualVersion.EdgeVersion++
			changed = true
		}
		if r.ObservedDesired != nil && (p.ObservedDesired == nil || p.ObservedDesired.Value != *r.ObservedDesired ||
			stateError(p.ObservedDesired) != errorOf(r.ObservedMetadata)) {
			var md map[string]string
			if e := errorOf(r.ObservedMetadata); e != "" {
				md = map[string]string{"error": e}
			}
			p.ObservedDesired = &valueState{Value: *r.ObservedDesired, Timestamp: ms, Metadata: md}
			changed = true
		}
		if changed && !slices.Contains(out.changed, r.Property) {
			out.changed = append(out.changed, r.Property)
			out.before[r.Property] = before
		}
	}
	slices.Sort(out.changed)
	if len(out.changed) > 0 {
		out.reported = true
		doc.Seq++
	}
	return out, nil
}

func metaTime(md map[string]string, now int64) int64 {
	if s := md["timestamp"]; s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
			return n
		}
	}
	return now
}

// applyState sets the device state; "online" also sets the last online time.
func applyState(doc *twinDoc, state string, now time.Time) bool {
	changed := doc.State != state
	doc.State = state
	if state == "online" {
		lo := now.UTC().Format(time.RFC3339)
		if doc.LastOnline != lo {
			doc.LastOnline = lo
			changed = true
		}
	}
	if changed {
		doc.Seq++
	}
	return changed
}

// applyCloudDesired applies Device.spec's desired values (merge rule 1): a
// desired value that differs from the last one read from the spec replaces
// expected, whatever the edge wrote, and bumps expected_version.cloud. An
// unchanged one (a redelivery, a resync, another spec field changing) leaves
// an edge-written expected in place. Desired values of ReadOnly or unknown
// properties, or invalid ones, are ignored and reported in skipped.
func applyCloudDesired(doc *twinDoc, dev *v1beta1.Device, model *v1beta1.DeviceModel, now time.Time) (up twinUpdate, skipped []string) {
	up.before = map[string]*propState{}
	for _, dp := range dev.Spec.Properties {
		if dp.Desired.Value == "" {
			continue
		}
		mp, ok := model.Property(dp.Name)
		switch {
		case !ok:
			skipped = append(skipped, fmt.Sprintf("property %q is not in model %q", dp.Name, model.Name))
			continue
		case mp.AccessMode == v1beta1.ReadOnly:
			skipped = append(skipped, fmt.Sprintf("property %q is ReadOnly; its desired value is ignored", dp.Name))
			continue
		}
		if err := checkValue(mp, dp.Desired.Value); err != nil {
			skipped = append(skipped, "desired: "+err.Error())
			continue
		}
		cur := doc.Props[dp.Name]
		if cur != nil && cur.CloudDesired != nil && *cur.CloudDesired == dp.Desired.Value {
			continue
		}
		var before *propState
		if cur != nil {
			before = cur.clone()
		}
		p := doc.prop(dp.Name)
		v := dp.Desired.Value
		p.CloudDesired = &v
		p.Expected = &valueState{Value: v, Timestamp: now.UnixMilli()}
		p.ExpectedVersion.CloudVersion++
		up.changed = append(up.changed, dp.Name)
		up.before[dp.Name] = before
	}
	slices.Sort(up.changed)
	return up, skipped
}

// acked records that the cloud acknowledged seq: when it is the latest,
// every actual value is in the cloud, which actual_version.cloud records.
func acked(doc *twinDoc, seq int64) bool {
	if seq <= doc.Synced {
		return false
	}
	doc.Synced = min(seq, doc.Seq)
	if doc.Synced == doc.Seq {
		for _, p := range doc.Props {
			p.ActualVersion.CloudVersion = p.ActualVersion.EdgeVersion
		}
	}
	return true
}

// delta lists properties whose expected value differs from the actual one.
func delta(doc *twinDoc) map[string]string {
	out := map[string]string{}
	for name, p := range doc.Props {
		if p.Expected != nil && (p.Actual == nil || p.Actual.Value != p.Expected.Value) {
			out[name] = p.Expected.Value
		}
	}
	return out
}

// twinMap renders the twins of doc for the model's properties (all of
// them when names is nil).
func twinMap(doc *twinDoc, model *v1beta1.DeviceModel, names []string) map[string]*MsgTwin {
	out := map[string]*MsgTwin{}
	if model == nil {
		return out
	}
	for _, mp := range model.Spec.Properties {
		if names != nil && !slices.Contains(names, mp.Name) {
			continue
		}
		p := doc.Props[mp.Name]
		if p == nil {
			p = &propState{}
		}
		out[mp.Name] = p.msgTwin(mp)
	}
	return out
}

// report builds the upstream report of a device.
func report(namespace, name string, doc *twinDoc, model *v1beta1.DeviceModel) wire.DeviceReport {
	r := wire.DeviceReport{Namespace: namespace, Name: name, Seq: doc.Seq, State: doc.State, LastOnlineTime: doc.LastOnline}
	for _, pname := range slices.Sorted(maps.Keys(doc.Props)) {
		p := doc.Props[pname]
		if p.Actual == nil && p.ObservedDesired == nil {
			continue
		}
		typ := ""
		if model != nil {
			if mp, ok := model.Property(pname); ok {
				typ = string(mp.Type)
			}
		}
		tr := wire.TwinReport{PropertyName: pname}
		if p.Actual != nil {
			tr.Reported = &wire.TwinValue{Value: p.Actual.Value, Metadata: valueMeta(p.Actual, typ)}
		}
		if p.ObservedDesired != nil {
			tr.ObservedDesired = &wire.TwinValue{Value: p.ObservedDesired.Value, Metadata: valueMeta(p.ObservedDesired, typ)}
		}
		r.Twins = append(r.Twins, tr)
	}
	return r
}

func valueMeta(v *valueState, typ string) map[string]string {
	md := map[string]string{}
	for k, val := range v.Metadata {
		md[k] = val
	}
	md["timestamp"] = strconv.FormatInt(v.Timestamp, 10)
	if typ != "" {
		md["type"] = typ
	}
	return md
}
