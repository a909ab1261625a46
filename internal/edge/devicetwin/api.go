package devicetwin

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/kubeedge-go/kubeedge/pkg/apis/devices/v1beta1"
)

func errorPub(topic, eventID string, now int64, code int, reason string) []Publication {
	return []Publication{{Topic: topic, Payload: marshal(ErrorResult{
		BaseMessage: BaseMessage{EventID: eventID, Timestamp: now}, Code: code, Reason: reason,
	})}}
}

// memberModel returns the member id and its model, or an UpdateError.
func (dt *DeviceTwin) memberModel(id string) (*member, *v1beta1.DeviceModel, *UpdateError) {
	m := dt.members[id]
	if m == nil {
		return nil, nil, refuse(ErrUnknownDevice, "device %q is not bound to node %q", id, dt.cfg.NodeName)
	}
	model := dt.modelOf(m.dev)
	if model == nil {
		return m, nil, refuse(ErrNoModel, "device model %q of device %q is not on this node (yet)", m.dev.ModelName(), id)
	}
	return m, model, nil
}

// TwinUpdate handles $hw/events/device/{id}/twin/update and returns what to
// publish, in order: the result, then the delta (when expected differs from
// actual) and the document (when something changed). A refused update
// yields only an error result; nothing is stored.
func (dt *DeviceTwin) TwinUpdate(ctx context.Context, id string, payload []byte) []Publication {
	topic := DeviceTopic(id, SuffixTwinUpdateResult)
	now := dt.deps.Clock.Now()
	u, err := ParseTwinUpdate(payload)
	if err != nil {
		dt.refused.Add(1)
		return errorPub(topic, EventIDOf(payload), now.UnixMilli(), CodeBadRequest, err.Error())
	}
	var pubs []Publication
	if err := dt.do(ctx, func(tx *txn) {
		_, model, uerr := dt.memberModel(id)
		if uerr != nil {
			dt.refused.Add(1)
			pubs = errorPub(topic, u.EventID, tx.now.UnixMilli(), uerr.Code(), uerr.Reason)
			return
		}
		doc := tx.doc(id)
		if doc == nil {
			doc = newDoc()
		}
		up, uerr := applyTwinUpdate(doc, model, u.Twin, tx.now)
		if uerr != nil {
			dt.refused.Add(1)
			pubs = errorPub(topic, u.EventID, tx.now.UnixMilli(), uerr.Code(), uerr.Reason)
			return
		}
		if len(up.changed) > 0 {
			tx.save(id, doc)
			tx.touch(id)
		}
		pubs = append(pubs, Publication{Topic: topic, Payload: marshal(TwinUpdate{
			BaseMessage: BaseMessage{EventID: u.EventID, Timestamp: tx.now.UnixMilli()},
			Twin:        twinMap(doc, model, slices.Sorted(maps.Keys(u.Twin))),
		})})
		pubs = append(pubs, twinEvents(id, doc, model, up, tx.now)...)
	}); err != nil {
		return errorPub(topic, u.EventID, now.UnixMilli(), CodeInternal, fmt.Sprintf("twin not stored: %v", err))
	}
	return pubs
}

// TwinGet handles .../twin/get from the local state (the cloud is not asked).
func (dt *DeviceTwin) TwinGet(ctx context.Context, id string, payload []byte) []Publication {
	topic := DeviceTopic(id, SuffixTwinGetResult)
	now := dt.deps.Clock.Now()
	b, err := ParseBase(payload)
	if err != nil {
		dt.refused.Add(1)
		return errorPub(topic, EventIDOf(payload), now.UnixMilli(), CodeBadRequest, err.Error())
	}
	var pubs []Publication
	if err := dt.do(ctx, func(tx *txn) {
		_, model, uerr := dt.memberModel(id)
		if uerr != nil {
			dt.refused.Add(1)
			pubs = errorPub(topic, b.EventID, tx.now.UnixMilli(), uerr.Code(), uerr.Reason)
			return
		}
		doc := tx.view(id)
		if doc == nil {
			doc = newDoc()
		}
		pubs = []Publication{{Topic: topic, Payload: marshal(TwinUpdate{
			BaseMessage: BaseMessage{EventID: b.EventID, Timestamp: tx.now.UnixMilli()},
			Twin:        twinMap(doc, model, nil),
		})}}
	}); err != nil {
		return errorPub(topic, b.EventID, now.UnixMilli(), CodeInternal, err.Error())
	}
	return pubs
}

// StateUpdate handles .../state/update.
func (dt *DeviceTwin) StateUpdate(ctx context.Context, id string, payload []byte) []Publication {
	topic := DeviceTopic(id, SuffixStateUpdateResult)
	now := dt.deps.Clock.Now()
	s, err := ParseStateUpdate(payload)
	if err != nil {
		dt.refused.Add(1)
		return errorPub(topic, EventIDOf(payload), now.UnixMilli(), CodeBadRequest, err.Error())
	}
	var pubs []Publication
	if err := dt.do(ctx, func(tx *txn) {
		m := dt.members[id]
		if m == nil {
			dt.refused.Add(1)
			pubs = errorPub(topic, s.EventID, tx.now.UnixMilli(), CodeNotFound, fmt.Sprintf("device %q is not bound to node %q", id, dt.cfg.NodeName))
			return
		}
		doc := tx.doc(id)
		if doc == nil {
			doc = newDoc()
		}
		if applyState(doc, s.State, tx.now) {
			tx.save(id, doc)
		}
		pubs = []Publication{{Topic: topic, Payload: marshal(StateResult{
			BaseMessage: BaseMessage{EventID: s.EventID, Timestamp: tx.now.UnixMilli()},
			Device:      DeviceInfo{ID: id, Name: m.dev.Name, State: doc.State, LastOnline: doc.LastOnline},
		})}}
	}); err != nil {
		return errorPub(topic, s.EventID, now.UnixMilli(), CodeInternal, err.Error())
	}
	return pubs
}

// StateGet handles .../state/get.
func (dt *DeviceTwin) StateGet(ctx context.Context, id string, payload []byte) []Publication {
	topic := DeviceTopic(id, SuffixStateGetResult)
	now := dt.deps.Clock.Now()
	b, err := ParseBase(payload)
	if err != nil {
		dt.refused.Add(1)
		return errorPub(topic, EventIDOf(payload), now.UnixMilli(), CodeBadRequest, err.Error())
	}
	var pubs []Publication
	if err := dt.do(ctx, func(tx *txn) {
		m := dt.members[id]
		if m == nil {
			dt.refused.Add(1)
			pubs = errorPub(topic, b.EventID, tx.now.UnixMilli(), CodeNotFound, fmt.Sprintf("device %q is not bound to node %q", id, dt.cfg.NodeName))
			return
		}
		info := DeviceInfo{ID: id, Name: m.dev.Name}
		if doc := tx.view(id); doc != nil {
			info.State, info.LastOnline = doc.State, doc.LastOnline
		}
		pubs = []Publication{{Topic: topic, Payload: marshal(StateResult{
			BaseMessage: BaseMessage{EventID: b.EventID, Timestamp: tx.now.UnixMilli()}, Device: info,
		})}}
	}); err != nil {
		return errorPub(topic, b.EventID, now.UnixMilli(), CodeInternal, err.Error())
	}
	return pubs
}

// MembershipGet handles $hw/events/node/{node}/membership/get.
func (dt *DeviceTwin) MembershipGet(ctx context.Context, payload []byte) []Publication {
	topic := NodeTopic(dt.cfg.NodeName, SuffixMembershipResult)
	now := dt.deps.Clock.Now()
	b, err := ParseBase(payload)
	if err != nil {
		dt.refused.Add(1)
		return errorPub(topic, EventIDOf(payload), now.UnixMilli(), CodeBadRequest, err.Error())
	}
	var pubs []Publication
	if err := dt.do(ctx, func(tx *txn) {
		res := MembershipResult{BaseMessage: BaseMessage{EventID: b.EventID, Timestamp: tx.now.UnixMilli()}, Devices: []DeviceInfo{}}
		for _, id := range slices.Sorted(maps.Keys(dt.members)) {
			m := dt.members[id]
			info := DeviceInfo{ID: id, Name: m.dev.Name}
			if doc := tx.view(id); doc != nil {
				info.State, info.LastOnline = doc.State, doc.LastOnline
				info.Twin = twinMap(doc, dt.modelOf(m.dev), nil)
			}
			res.Devices = append(res.Devices, info)
		}
		pubs = []Publication{{Topic: topic, Payload: marshal(res)}}
	}); err != nil {
		return errorPub(topic, b.EventID, now.UnixMilli(), CodeInternal, err.Error())
	}
	return pubs
}

// ReportTwins applies a mapper's reported values. The error is an
// *UpdateError for refused input (unknown device or property, wrong type,
// out of range), else a store error; nothing is stored on error. On nil the
// values are durable.
func (dt *DeviceTwin) ReportTwins(ctx context.Context, id string, reports []Report) error {
	var rerr error
	if err := dt.do(ctx, func(tx *txn) {
		_, model, uerr := dt.memberModel(id)
		if uerr != nil {
			dt.refused.Add(1)
			rerr = uerr
			return
		}
		doc := tx.doc(id)
		if doc == nil {
			doc = newDoc()
		}
		up, uerr := applyReports(doc, model, reports, tx.now)
		if uerr != nil {
			dt.refused.Add(1)
			rerr = uerr
			return
		}
		if len(up.changed) > 0 {
			tx.save(id, doc)
			tx.publish(twinEvents(id, doc, model, up, tx.now)...)
		}
	}); err != nil {
		return fmt.Errorf("devicetwin: report of %s not stored: %w", id, err)
	}
	return rerr
}

// ReportState sets a device's state as its mapper reports it.
func (dt *DeviceTwin) ReportState(ctx context.Context, id, state string) error {
	if state == "" || len(state) > 256 {
		return refuse(ErrInvalid, "device state must be 1 to 256 bytes, got %d", len(state))
	}
	var rerr error
	if err := dt.do(ctx, func(tx *txn) {
		if dt.members[id] == nil {
			dt.refused.Add(1)
			rerr = refuse(ErrUnknownDevice, "device %q is not bound to node %q", id, dt.cfg.NodeName)
			return
		}
		doc := tx.doc(id)
		if doc == nil {
			doc = newDoc()
		}
		if applyState(doc, state, tx.now) {
			tx.save(id, doc)
		}
	}); err != nil {
		return fmt.Errorf("devicetwin: state of %s not stored: %w", id, err)
	}
	return rerr
}

// DeviceView is a device as its mapper should see it: the Device with each
// property's desired value replaced by the twin's expected value (which may
// have been written at the edge), and its model (nil if not on the node).
type DeviceView struct {
	ID     string
	Device *v1beta1.Device
	Model  *v1beta1.DeviceModel
	State  string
}

func (dt *DeviceTwin) view(tx *txn, m *member) DeviceView {
	v := DeviceView{ID: m.id, Device: m.dev.DeepCopy()}
	if model := dt.modelOf(m.dev); model != nil {
		v.Model = model.DeepCopy()
	}
	if doc := tx.view(m.id); doc != nil {
		v.State = doc.State
		for i := range v.Device.Spec.Properties {
			p := &v.Device.Spec.Properties[i]
			if ps := doc.Props[p.Name]; ps != nil && ps.Expected != nil {
				p.Desired.Value = ps.Expected.Value
			}
		}
	}
	return v
}

// Device returns the mapper view of id; false if id is not a member.
func (dt *DeviceTwin) Device(ctx context.Context, id string) (DeviceView, bool, error) {
	var v DeviceView
	var ok bool
	err := dt.do(ctx, func(tx *txn) {
		if m := dt.members[id]; m != nil {
			v, ok = dt.view(tx, m), true
		}
	})
	return v, ok, err
}

// Devices returns the mapper views of all members, by id.
func (dt *DeviceTwin) Devices(ctx context.Context) ([]DeviceView, error) {
	var out []DeviceView
	err := dt.do(ctx, func(tx *txn) {
		for _, id := range slices.Sorted(maps.Keys(dt.members)) {
			out = append(out, dt.view(tx, dt.members[id]))
		}
	})
	return out, err
}
