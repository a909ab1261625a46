package edgeapi

import (
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestDecodePodStatusRequest(t *testing.T) {
	for _, tc := range []struct {
		name, content, route, wantErr string
	}{
		{"ok", `{"UID":"u","Name":"p","Status":{"phase":"Running"}}`, "p", ""},
		{"not json", `{"UID":`, "p", "not a PodStatusRequest"},
		{"no uid", `{"Name":"p","Status":{}}`, "p", "UID is empty"},
		{"other pod", `{"UID":"u","Name":"q","Status":{}}`, "p", `names pod "q"`},
		{"wrong type", `{"UID":"u","Name":"p","Status":{"phase":7}}`, "p", "not a PodStatusRequest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := DecodePodStatusRequest([]byte(tc.content), tc.route)
			if tc.wantErr == "" {
				if err != nil || r.Status.Phase != corev1.PodRunning {
					t.Fatalf("got %+v, %v", r, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestDecodePodDeletion(t *testing.T) {
	if d, err := DecodePodDeletion([]byte(`{"uid":"abc"}`)); err != nil || d.UID != "abc" {
		t.Fatalf("%+v %v", d, err)
	}
	for _, bad := range []string{`{}`, `[]`, `"x"`, ``} {
		if _, err := DecodePodDeletion([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzDecodePodStatusRequest(f *testing.F) {
	f.Add([]byte(`{"UID":"u","Name":"p","Status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}`), "p")
	f.Add([]byte(`{"UID":"","Name":"p"}`), "p")
	f.Add([]byte(`null`), "")
	f.Fuzz(func(t *testing.T, content []byte, name string) {
		r, err := DecodePodStatusRequest(content, name)
		if err != nil {
			return
		}
		if r.UID == "" || r.Name != name {
			t.Fatalf("accepted an invalid request %+v for %q", r, name)
		}
		if _, err := json.Marshal(r); err != nil {
			t.Fatalf("accepted request does not marshal: %v", err)
		}
	})
}

func FuzzDecodePodDeletion(f *testing.F) {
	f.Add([]byte(`{"uid":"abc"}`))
	f.Add([]byte(`{"uid":""}`))
	f.Fuzz(func(t *testing.T, content []byte) {
		if d, err := DecodePodDeletion(content); err == nil && d.UID == "" {
			t.Fatal("accepted a deletion without uid")
		}
	})
}
