package devicetwin

import (
	"errors"
	"testing"
)

func TestParseTwinUpdate(t *testing.T) {
	for _, tc := range []struct {
		payload string
		ok      bool
	}{
		{`{"event_id":"1","timestamp":2,"twin":{"temp":{"actual":{"value":"21"},"metadata":{"type":"Updated"}}}}`, true},
		{`{"event_id":"1","twin":{"setpoint":{"expected":{"value":"3"},"expected_version":{"cloud":1,"edge":2}}}}`, true},
		{`{"twin":{"x":{"actual":{"value":"1"}}},"extra":"fields are fine"}`, true},
		{``, false},
		{`not json`, false},
		{`{"twin":{}}`, false},
		{`{"twin":{"x":null}}`, false},
		{`{"twin":{"x":{}}}`, false},
		{`{"twin":{"x":{"actual":{}}}}`, false},
		{`{"twin":{"x":{"actual":{"value":1}}}}`, false},
		{`{"twin":{"":{"actual":{"value":"1"}}}}`, false},
		{`{"twin":{"x":{"actual":{"value":"1"},"metadata":{"type":"deleted"}}}}`, false},
		{`{"twin":{"x":{"actual":{"value":"1"}}}} trailing`, false},
		{"{\"twin\":{\"x\":{\"actual\":{\"value\":\"\xff\"}}}}", false},
	} {
		_, err := ParseTwinUpdate([]byte(tc.payload))
		if (err == nil) != tc.ok {
			t.Errorf("ParseTwinUpdate(%q) = %v, want ok=%v", tc.payload, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrBadPayload) {
			t.Errorf("error %v does not wrap ErrBadPayload", err)
		}
	}
}

func TestParseOthers(t *testing.T) {
	if _, err := ParseStateUpdate([]byte(`{"state":""}`)); err == nil {
		t.Error("empty state accepted")
	}
	if s, err := ParseStateUpdate([]byte(`{"event_id":"e","state":"online"}`)); err != nil || s.State != "online" || s.EventID != "e" {
		t.Errorf("state: %+v %v", s, err)
	}
	if b, err := ParseBase(nil); err != nil || b.EventID != "" {
		t.Errorf("empty query: %+v %v", b, err)
	}
	if _, err := ParseBase([]byte(`[1]`)); err == nil {
		t.Error("array query accepted")
	}
	if id := EventIDOf([]byte(`{"event_id":"abc","twin":5}`)); id != "abc" {
		t.Errorf("EventIDOf = %q", id)
	}
}

// FuzzParseTwinUpdate checks that the twin/update parser never panics and
// that what it accepts can be applied (or refused) without panicking.
func FuzzParseTwinUpdate(f *testing.F) {
	f.Add([]byte(`{"event_id":"1","timestamp":2,"twin":{"temp":{"actual":{"value":"21"},"metadata":{"type":"Updated"}}}}`))
	f.Add([]byte(`{"twin":{"setpoint":{"expected":{"value":"3"},"expected_version":{"cloud":1,"edge":2}}}}`))
	f.Add([]byte(`{"twin":{"x":null}}`))
	f.Add([]byte(`{"twin":{"on":{"expected":{"value":"true","metadata":{"timestamp":-5}},"actual_version":{"edge":9}}}}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		u, err := ParseTwinUpdate(payload)
		if err != nil {
			if !errors.Is(err, ErrBadPayload) {
				t.Fatalf("error %v does not wrap ErrBadPayload", err)
			}
			return
		}
		doc := newDoc()
		before := doc.clone()
		if _, uerr := applyTwinUpdate(doc, testModel(), u.Twin, t0); uerr != nil && doc.Seq != before.Seq {
			t.Fatalf("a refused update changed seq")
		}
	})
}
