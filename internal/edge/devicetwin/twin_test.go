package devicetwin

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeedge-go/kubeedge/pkg/apis/devices/v1beta1"
)

var t0 = time.UnixMilli(1_700_000_000_000)

func testModel() *v1beta1.DeviceModel {
	return &v1beta1.DeviceModel{
		ObjectMeta: metav1.ObjectMeta{Name: "thermo", Namespace: "default"},
		Spec: v1beta1.DeviceModelSpec{Protocol: "modbus", Properties: []v1beta1.ModelProperty{
			{Name: "temp", Type: v1beta1.PropertyTypeFloat, AccessMode: v1beta1.ReadOnly, Minimum: "-40", Maximum: "125"},
			{Name: "setpoint", Type: v1beta1.PropertyTypeInt, AccessMode: v1beta1.ReadWrite, Minimum: "1", Maximum: "100"},
			{Name: "on", Type: v1beta1.PropertyTypeBoolean, AccessMode: v1beta1.ReadWrite},
			{Name: "label", Type: v1beta1.PropertyTypeString, AccessMode: v1beta1.ReadWrite},
		}},
	}
}

func str(s string) *string { return &s }

func val(s string) *TwinValue { return &TwinValue{Value: str(s)} }

func TestCheckValue(t *testing.T) {
	m := testModel()
	p := func(n string) v1beta1.ModelProperty { mp, _ := m.Property(n); return mp }
	for _, tc := range []struct {
		prop, value string
		ok          bool
	}{
		{"setpoint", "50", true},
		{"setpoint", "1", true},
		{"setpoint", "100", true},
		{"setpoint", "0", false},
		{"setpoint", "101", false},
		{"setpoint", "5.5", false},
		{"setpoint", "abc", false},
		{"setpoint", "", false},
		{"temp", "21.5", true},
		{"temp", "-40", true},
		{"temp", "-41", false},
		{"temp", "NaN", false},
		{"temp", "Inf", false},
		{"temp", "1e400", false},
		{"on", "true", true},
		{"on", "0", true},
		{"on", "yes", false},
		{"label", "anything at all", true},
	} {
		err := checkValue(p(tc.prop), tc.value)
		if (err == nil) != tc.ok {
			t.Errorf("checkValue(%s, %q) = %v, want ok=%v", tc.prop, tc.value, err, tc.ok)
		}
	}
	if err := checkValue(v1beta1.ModelProperty{Name: "x", Type: v1beta1.PropertyTypeInt, Maximum: "ten"}, "5"); err == nil {
		t.Error("a model maximum that is not a number must be an error")
	}
}

func TestApplyTwinUpdate(t *testing.T) {
	for _, tc := range []struct {
		name      string
		start     map[string]*propState
		upd       map[string]*MsgTwin
		wantErr   error
		wantProps map[string]*propState
		changed   []string
		reported  bool
	}{
		{
			name:      "actual from a device app bumps the edge actual version",
			upd:       map[string]*MsgTwin{"temp": {Actual: val("21.5")}},
			wantProps: map[string]*propState{"temp": {Actual: &valueState{Value: "21.5", Timestamp: t0.UnixMilli()}, ActualVersion: TwinVersion{EdgeVersion: 1}}},
			changed:   []string{"temp"}, reported: true,
		},
		{
			name:      "expected on a writable property bumps the edge expected version",
			upd:       map[string]*MsgTwin{"setpoint": {Expected: val("30")}},
			wantProps: map[string]*propState{"setpoint": {Expected: &valueState{Value: "30", Timestamp: t0.UnixMilli()}, ExpectedVersion: TwinVersion{EdgeVersion: 1}}},
			changed:   []string{"setpoint"},
		},
		{
			name:      "an unchanged value changes nothing",
			start:     map[string]*propState{"temp": {Actual: &valueState{Value: "20"}, ActualVersion: TwinVersion{EdgeVersion: 3}}},
			upd:       map[string]*MsgTwin{"temp": {Actual: val("20")}},
			wantProps: map[string]*propState{"temp": {Actual: &valueState{Value: "20"}, ActualVersion: TwinVersion{EdgeVersion: 3}}},
		},
		{
			name:      "a current version is accepted",
			start:     map[string]*propState{"setpoint": {Expected: &valueState{Value: "10"}, ExpectedVersion: TwinVersion{CloudVersion: 2, EdgeVersion: 1}}},
			upd:       map[string]*MsgTwin{"setpoint": {Expected: val("11"), ExpectedVersion: &TwinVersion{CloudVersion: 2, EdgeVersion: 1}}},
			wantProps: map[string]*propState{"setpoint": {Expected: &valueState{Value: "11", Timestamp: t0.UnixMilli()}, ExpectedVersion: TwinVersion{CloudVersion: 2, EdgeVersion: 2}}},
			changed:   []string{"setpoint"},
		},
		{
			name:    "a stale expected version is a conflict",
			start:   map[string]*propState{"setpoint": {Expected: &valueState{Value: "10"}, ExpectedVersion: TwinVersion{CloudVersion: 2, EdgeVersion: 1}}},
			upd:     map[string]*MsgTwin{"setpoint": {Expected: val("11"), ExpectedVersion: &TwinVersion{CloudVersion: 1, EdgeVersion: 1}}},
			wantErr: ErrConflict,
		},
		{
			name:    "a stale actual version is a conflict",
			start:   map[string]*propState{"temp": {Actual: &valueState{Value: "10"}, ActualVersion: TwinVersion{EdgeVersion: 5}}},
			upd:     map[string]*MsgTwin{"temp": {Actual: val("11"), ActualVersion: &TwinVersion{EdgeVersion: 4}}},
			wantErr: ErrConflict,
		},
		{name: "unknown property", upd: map[string]*MsgTwin{"humidity": {Actual: val("1")}}, wantErr: ErrInvalid},
		{name: "expected on a ReadOnly property", upd: map[string]*MsgTwin{"temp": {Expected: val("1")}}, wantErr: ErrReadOnly},
		{name: "wrong type", upd: map[string]*MsgTwin{"setpoint": {Expected: val("hot")}}, wantErr: ErrInvalid},
		{name: "out of range", upd: map[string]*MsgTwin{"setpoint": {Expected: val("1000")}}, wantErr: ErrInvalid},
		{
			name:    "all or nothing: one bad property refuses the whole update",
			upd:     map[string]*MsgTwin{"label": {Expected: val("ok")}, "setpoint": {Expected: val("0")}},
			wantErr: ErrInvalid,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := newDoc()
			for k, v := range tc.start {
				doc.Props[k] = v.clone()
			}
			before := doc.clone()
			up, err := applyTwinUpdate(doc, testModel(), tc.upd, t0)
			if tc.wantErr != nil {
				if err == nil || !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if diff := cmp.Diff(before, doc); diff != "" {
					t.Errorf("a refused update changed the twin (-before +after):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if diff := cmp.Diff(tc.wantProps, doc.Props); diff != "" {
				t.Errorf("props (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.changed, up.changed); diff != "" {
				t.Errorf("changed (-want +got):\n%s", diff)
			}
			if up.reported != tc.reported || (doc.Seq == 1) != tc.reported {
				t.Errorf("reported = %v seq = %d, want reported %v", up.reported, doc.Seq, tc.reported)
			}
		})
	}
}

func TestConflictCodeAndReason(t *testing.T) {
	doc := newDoc()
	doc.Props["setpoint"] = &propState{ExpectedVersion: TwinVersion{CloudVersion: 3}}
	_, err := applyTwinUpdate(doc, testModel(), map[string]*MsgTwin{"setpoint": {Expected: val("5"), ExpectedVersion: &TwinVersion{CloudVersion: 2}}}, t0)
	if err == nil || err.Code() != CodeConflict {
		t.Fatalf("err = %v, want a %d conflict", err, CodeConflict)
	}
	if want := "expected_version {cloud:2, edge:0} is stale, the current one is {cloud:3, edge:0}"; !strings.Contains(err.Error(), want) {
		t.Errorf("reason %q does not say %q", err.Error(), want)
	}
}

func device(desired map[string]string) *v1beta1.Device {
	d := &v1beta1.Device{ObjectMeta: metav1.ObjectMeta{Name: "t1", Namespace: "default"}}
	d.Spec.DeviceModelRef = nil
	d.Spec.NodeName = "node-a"
	for _, n := range []string{"setpoint", "on", "temp"} {
		d.Spec.Properties = append(d.Spec.Properties, v1beta1.DeviceProperty{Name: n, Desired: v1beta1.TwinProperty{Value: desired[n]}})
	}
	return d
}

// TestMergeRules walks the documented merge rules of cloud desired values
// and edge expected writes.
func TestMergeRules(t *testing.T) {
	m := testModel()
	doc := newDoc()
	// 1. The first desired value from the cloud sets expected, cloud version 1.
	up, skipped := applyCloudDesired(doc, device(map[string]string{"setpoint": "20"}), m, t0)
	if len(skipped) != 0 || !cmp.Equal(up.changed, []string{"setpoint"}) {
		t.Fatalf("changed %v skipped %v", up.changed, skipped)
	}
	sp := doc.Props["setpoint"]
	if sp.Expected.Value != "20" || sp.ExpectedVersion != (TwinVersion{CloudVersion: 1}) {
		t.Fatalf("after cloud desired: %+v", sp)
	}
	// 2. An edge write overrides it locally.
	if _, err := applyTwinUpdate(doc, m, map[string]*MsgTwin{"setpoint": {Expected: val("25")}}, t0); err != nil {
		t.Fatal(err)
	}
	// 3. Redelivering the same spec (reconnect, resync) keeps the edge value.
	up, _ = applyCloudDesired(doc, device(map[string]string{"setpoint": "20"}), m, t0)
	if len(up.changed) != 0 || doc.Props["setpoint"].Expected.Value != "25" {
		t.Fatalf("an unchanged spec overrode the edge write: %+v", doc.Props["setpoint"].Expected)
	}
	// 4. A new cloud desired value wins over the edge write.
	up, _ = applyCloudDesired(doc, device(map[string]string{"setpoint": "40"}), m, t0)
	sp = doc.Props["setpoint"]
	if len(up.changed) != 1 || sp.Expected.Value != "40" || sp.ExpectedVersion != (TwinVersion{CloudVersion: 2, EdgeVersion: 1}) {
		t.Fatalf("after the second cloud change: %+v %+v", sp.Expected, sp.ExpectedVersion)
	}
	// 5. Desired values of ReadOnly properties and invalid ones are skipped, with a reason.
	_, skipped = applyCloudDesired(doc, device(map[string]string{"temp": "3", "on": "maybe"}), m, t0)
	if len(skipped) != 2 {
		t.Fatalf("skipped = %v, want the ReadOnly and the invalid value", skipped)
	}
	if doc.Props["temp"] != nil || doc.Props["on"] != nil {
		t.Errorf("skipped desired values were stored: %+v %+v", doc.Props["temp"], doc.Props["on"])
	}
}

func TestDeltaAndAck(t *testing.T) {
	m := testModel()
	doc := newDoc()
	applyCloudDesired(doc, device(map[string]string{"setpoint": "20", "on": "true"}), m, t0)
	if diff := cmp.Diff(map[string]string{"setpoint": "20", "on": "true"}, delta(doc)); diff != "" {
		t.Fatalf("delta (-want +got):\n%s", diff)
	}
	up, err := applyReports(doc, m, []Report{{Property: "setpoint", Reported: str("20"), ObservedDesired: str("20")}}, t0)
	if err != nil || !up.reported || doc.Seq != 1 {
		t.Fatalf("report: %v %+v seq %d", err, up, doc.Seq)
	}
	if diff := cmp.Diff(map[string]string{"on": "true"}, delta(doc)); diff != "" {
		t.Errorf("delta after the report (-want +got):\n%s", diff)
	}
	// The same report again changes nothing and does not bump Seq.
	up, _ = applyReports(doc, m, []Report{{Property: "setpoint", Reported: str("20"), ObservedDesired: str("20")}}, t0)
	if up.reported || doc.Seq != 1 {
		t.Errorf("an unchanged report bumped seq to %d", doc.Seq)
	}
	if !acked(doc, 1) || doc.Synced != 1 || doc.Props["setpoint"].ActualVersion.CloudVersion != 1 {
		t.Errorf("ack: synced %d, actual version %+v", doc.Synced, doc.Props["setpoint"].ActualVersion)
	}
	if acked(doc, 1) {
		t.Error("a duplicate ack changed the twin")
	}
	r := report("default", "t1", doc, m)
	if len(r.Twins) != 1 || r.Twins[0].Reported.Value != "20" || r.Twins[0].Reported.Metadata["type"] != "INT" || r.Twins[0].ObservedDesired.Value != "20" {
		t.Errorf("report = %+v", r)
	}
	if _, err := applyReports(doc, m, []Report{{Property: "setpoint", Reported: str("500")}}, t0); err == nil || !errors.Is(err, ErrInvalid) {
		t.Errorf("out of range report: %v", err)
	}
}

func TestApplyState(t *testing.T) {
	doc := newDoc()
	if !applyState(doc, "online", t0) || doc.LastOnline == "" || doc.Seq != 1 {
		t.Fatalf("online: %+v", doc)
	}
	if applyState(doc, "online", t0) {
		t.Error("the same state at the same second counted as a change")
	}
	if !applyState(doc, "offline", t0.Add(time.Hour)) || doc.LastOnline != t0.UTC().Format(time.RFC3339) {
		t.Errorf("offline must keep the last online time: %+v", doc)
	}
}
