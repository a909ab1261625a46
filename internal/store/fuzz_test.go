package store

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// FuzzObjectRoundTrip puts an arbitrary object into SQLite and Memory: both
// must either return it unchanged from Get and List and remove it on delete,
// or refuse it with ErrInvalid exactly when the key rules say so.
func FuzzObjectRoundTrip(f *testing.F) {
	f.Add("pod", "default", "nginx", "12345", []byte(`{"kind":"Pod"}`))
	f.Add("node", "", "edge-1", "", []byte{})
	f.Add("secret", "ns", "bin", "1", []byte{0, 0xff, 0})
	f.Add("twin", "équipe", "capteur °C", "rv", []byte("v"))
	f.Add("", "ns", "n", "1", []byte("v"))
	f.Add("pod", "ns", "", "1", []byte("v"))
	f.Add("pod", "n\x00s", "n", "1", []byte("v"))
	f.Add("pod", "ns", "n\xff", "1", []byte("v"))
	f.Add("pod", "ns", "n", "1\x00", []byte("v"))
	f.Add("pod", "ns", "a'); DROP TABLE meta; --", "1", []byte("v"))

	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(f.TempDir(), "fuzz.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	mem := NewMemory()

	f.Fuzz(func(t *testing.T, typ, ns, name, rv string, value []byte) {
		in := Object{Type: typ, Namespace: ns, Name: name, ResourceVersion: rv, Value: value}
		valid := typ != "" && name != ""
		for _, str := range []string{typ, ns, name, rv} {
			valid = valid && utf8.ValidString(str) && !strings.ContainsRune(str, 0)
		}
		want := in
		want.Value = bytes.Clone(value)
		if len(want.Value) == 0 {
			want.Value = nil
		}
		for _, st := range []struct {
			name string
			s    Store
		}{{"sqlite", s}, {"memory", mem}} {
			err := st.s.Apply(ctx, []Change{{Op: OpPut, Object: in}})
			if !valid {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "change 0 (put") {
					t.Fatalf("%s: Apply(%+v) = %v, want ErrInvalid naming the change", st.name, in, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s: Apply(%+v): %v", st.name, in, err)
			}
			got, err := st.s.Get(ctx, typ, ns, name)
			if err != nil {
				t.Fatalf("%s: Get: %v", st.name, err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("%s: round trip (-want +got):\n%s", st.name, diff)
			}
			list, err := st.s.List(ctx, typ, ns)
			if err != nil {
				t.Fatalf("%s: List: %v", st.name, err)
			}
			if diff := cmp.Diff([]Object{want}, list); diff != "" {
				t.Fatalf("%s: List (-want +got):\n%s", st.name, diff)
			}
			if err := st.s.Apply(ctx, []Change{{Op: OpDelete, Object: Object{Type: typ, Namespace: ns, Name: name}}}); err != nil {
				t.Fatalf("%s: delete: %v", st.name, err)
			}
			if _, err := st.s.Get(ctx, typ, ns, name); !errors.Is(err, ErrNotFound) {
				t.Fatalf("%s: Get after delete = %v, want ErrNotFound", st.name, err)
			}
		}
	})
}
