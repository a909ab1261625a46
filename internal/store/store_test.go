package store

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// implementations lists the stores the shared suite runs over.
var implementations = []struct {
	name string
	open func(t testing.TB) Store
}{
	{"sqlite", func(t testing.TB) Store { return openTemp(t) }},
	{"memory", func(t testing.TB) Store {
		m := NewMemory()
		t.Cleanup(func() { m.Close() })
		return m
	}},
}

// openTemp opens a SQLite store in a fresh temporary directory, closed at the
// end of the test.
func openTemp(t testing.TB) *SQLite {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "edge", "meta.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func put(typ, ns, name, rv, value string) Change {
	return Change{Op: OpPut, Object: obj(typ, ns, name, rv, value)}
}

func del(typ, ns, name string) Change {
	return Change{Op: OpDelete, Object: Object{Type: typ, Namespace: ns, Name: name}}
}

func obj(typ, ns, name, rv, value string) Object {
	o := Object{Type: typ, Namespace: ns, Name: name, ResourceVersion: rv}
	if value != "" {
		o.Value = []byte(value)
	}
	return o
}

type getCheck struct {
	typ, ns, name string
	want          Object // compared when wantErr is nil
	wantErr       error  // errors.Is target
	wantMsg       string // substring of the error message
}

type listCheck struct {
	typ, ns string
	want    []Object
}

func TestStore(t *testing.T) {
	tests := []struct {
		name string
		// batches are applied in order; all but the last must succeed.
		batches [][]Change
		// wantErr/wantMsg describe the last batch's result.
		wantErr   error
		wantMsg   string
		gets      []getCheck
		lists     []listCheck
		wantCount int
	}{
		{
			name:      "put then get",
			batches:   [][]Change{{put("pod", "default", "nginx", "1", `{"a":1}`)}},
			gets:      []getCheck{{typ: "pod", ns: "default", name: "nginx", want: obj("pod", "default", "nginx", "1", `{"a":1}`)}},
			wantCount: 1,
		},
		{
			name: "put replaces",
			batches: [][]Change{
				{put("pod", "default", "nginx", "1", "old")},
				{put("pod", "default", "nginx", "2", "new")},
			},
			gets:      []getCheck{{typ: "pod", ns: "default", name: "nginx", want: obj("pod", "default", "nginx", "2", "new")}},
			wantCount: 1,
		},
		{
			name: "delete removes",
			batches: [][]Change{
				{put("pod", "default", "nginx", "1", "v"), put("pod", "default", "other", "1", "v")},
				{del("pod", "default", "nginx")},
			},
			gets: []getCheck{
				{typ: "pod", ns: "default", name: "nginx", wantErr: ErrNotFound, wantMsg: `store: not found: type "pod" namespace "default" name "nginx"`},
				{typ: "pod", ns: "default", name: "other", want: obj("pod", "default", "other", "1", "v")},
			},
			wantCount: 1,
		},
		{
			name:      "delete of a missing key is not an error",
			batches:   [][]Change{{del("pod", "default", "ghost")}},
			wantCount: 0,
		},
		{
			name:    "get of a missing key names the key",
			batches: [][]Change{{put("pod", "default", "a", "1", "v")}},
			gets: []getCheck{
				{typ: "pod", ns: "kube-system", name: "a", wantErr: ErrNotFound, wantMsg: `namespace "kube-system" name "a"`},
				{typ: "configmap", ns: "default", name: "a", wantErr: ErrNotFound, wantMsg: `type "configmap"`},
			},
			wantCount: 1,
		},
		{
			name:    "cluster-scoped objects use the empty namespace",
			batches: [][]Change{{put("node", "", "edge-1", "7", "n1"), put("node", "", "edge-0", "3", "n0")}},
			gets: []getCheck{
				{typ: "node", ns: "", name: "edge-1", want: obj("node", "", "edge-1", "7", "n1")},
				{typ: "node", ns: "default", name: "edge-1", wantErr: ErrNotFound},
			},
			lists:     []listCheck{{typ: "node", want: []Object{obj("node", "", "edge-0", "3", "n0"), obj("node", "", "edge-1", "7", "n1")}}},
			wantCount: 2,
		},
		{
			name: "list orders by namespace then name and filters by type and namespace",
			batches: [][]Change{{
				put("pod", "b", "x", "1", "bx"),
				put("pod", "a", "z", "1", "az"),
				put("configmap", "a", "cm", "1", "cm"),
				put("pod", "a", "a", "1", "aa"),
				put("pod", "B", "y", "1", "By"), // upper case sorts first (byte order)
				put("pod", "a", "a-1", "1", "aa1"),
			}},
			lists: []listCheck{
				{typ: "pod", want: []Object{
					obj("pod", "B", "y", "1", "By"),
					obj("pod", "a", "a", "1", "aa"),
					obj("pod", "a", "a-1", "1", "aa1"),
					obj("pod", "a", "z", "1", "az"),
					obj("pod", "b", "x", "1", "bx"),
				}},
				{typ: "pod", ns: "a", want: []Object{
					obj("pod", "a", "a", "1", "aa"),
					obj("pod", "a", "a-1", "1", "aa1"),
					obj("pod", "a", "z", "1", "az"),
				}},
				{typ: "configmap", ns: "a", want: []Object{obj("configmap", "a", "cm", "1", "cm")}},
				{typ: "configmap", ns: "b", want: nil},
				{typ: "secret", want: nil},
			},
			wantCount: 6,
		},
		{
			name:      "later change to the same key in one batch wins (put, put)",
			batches:   [][]Change{{put("pod", "d", "p", "1", "one"), put("pod", "d", "p", "2", "two")}},
			gets:      []getCheck{{typ: "pod", ns: "d", name: "p", want: obj("pod", "d", "p", "2", "two")}},
			wantCount: 1,
		},
		{
			name:      "later change to the same key in one batch wins (put, delete)",
			batches:   [][]Change{{put("pod", "d", "p", "1", "one"), del("pod", "d", "p")}},
			gets:      []getCheck{{typ: "pod", ns: "d", name: "p", wantErr: ErrNotFound}},
			wantCount: 0,
		},
		{
			name:      "later change to the same key in one batch wins (delete, put)",
			batches:   [][]Change{{put("pod", "d", "p", "1", "one")}, {del("pod", "d", "p"), put("pod", "d", "p", "3", "three")}},
			gets:      []getCheck{{typ: "pod", ns: "d", name: "p", want: obj("pod", "d", "p", "3", "three")}},
			wantCount: 1,
		},
		{
			name: "values are opaque bytes; empty reads back as nil",
			batches: [][]Change{{
				{Op: OpPut, Object: Object{Type: "secret", Namespace: "d", Name: "bin", ResourceVersion: "1", Value: []byte{0, 0xff, 0xfe, 0, '\n'}}},
				{Op: OpPut, Object: Object{Type: "secret", Namespace: "d", Name: "empty", ResourceVersion: "1", Value: []byte{}}},
				{Op: OpPut, Object: Object{Type: "secret", Namespace: "d", Name: "nil", ResourceVersion: ""}},
			}},
			gets: []getCheck{
				{typ: "secret", ns: "d", name: "bin", want: Object{Type: "secret", Namespace: "d", Name: "bin", ResourceVersion: "1", Value: []byte{0, 0xff, 0xfe, 0, '\n'}}},
				{typ: "secret", ns: "d", name: "empty", want: Object{Type: "secret", Namespace: "d", Name: "empty", ResourceVersion: "1"}},
				{typ: "secret", ns: "d", name: "nil", want: Object{Type: "secret", Namespace: "d", Name: "nil"}},
			},
			wantCount: 3,
		},
		{
			name:      "unicode keys",
			batches:   [][]Change{{put("twin", "équipe", "capteur-°C", "rv-ü", "v")}},
			gets:      []getCheck{{typ: "twin", ns: "équipe", name: "capteur-°C", want: obj("twin", "équipe", "capteur-°C", "rv-ü", "v")}},
			wantCount: 1,
		},
		{
			name:      "empty batch is a no-op",
			batches:   [][]Change{nil},
			wantCount: 0,
		},
		{
			name:      "empty Type is refused",
			batches:   [][]Change{{put("", "default", "x", "1", "v")}},
			wantErr:   ErrInvalid,
			wantMsg:   `store: invalid input: change 0 (put type "" namespace "default" name "x"): empty Type`,
			wantCount: 0,
		},
		{
			name:      "empty Name is refused, also for delete",
			batches:   [][]Change{{del("pod", "default", "")}},
			wantErr:   ErrInvalid,
			wantMsg:   `change 0 (delete type "pod" namespace "default" name ""): empty Name`,
			wantCount: 0,
		},
		{
			name:      "unknown Op is refused",
			batches:   [][]Change{{{Op: Op(7), Object: obj("pod", "d", "p", "1", "v")}}},
			wantErr:   ErrInvalid,
			wantMsg:   "change 0 (Op(7) ",
			wantCount: 0,
		},
		{
			name:      "invalid UTF-8 in a key is refused",
			batches:   [][]Change{{put("pod", "d", "a\xffb", "1", "v")}},
			wantErr:   ErrInvalid,
			wantMsg:   `Name "a\xffb" is not valid UTF-8`,
			wantCount: 0,
		},
		{
			name:      "NUL in a key is refused",
			batches:   [][]Change{{put("pod", "d\x00", "p", "1", "v")}},
			wantErr:   ErrInvalid,
			wantMsg:   `Namespace "d\x00" contains a NUL byte`,
			wantCount: 0,
		},
		{
			name:      "NUL in ResourceVersion is refused",
			batches:   [][]Change{{put("pod", "d", "p", "1\x00", "v")}},
			wantErr:   ErrInvalid,
			wantMsg:   `ResourceVersion "1\x00" contains a NUL byte`,
			wantCount: 0,
		},
		{
			name: "an invalid change fails the whole batch",
			batches: [][]Change{
				{put("pod", "d", "keep", "1", "v")},
				{put("pod", "d", "new", "1", "v"), del("pod", "d", "keep"), put("pod", "d", "", "1", "v")},
			},
			wantErr: ErrInvalid,
			wantMsg: "change 2 (put",
			gets: []getCheck{
				{typ: "pod", ns: "d", name: "keep", want: obj("pod", "d", "keep", "1", "v")},
				{typ: "pod", ns: "d", name: "new", wantErr: ErrNotFound},
			},
			wantCount: 1,
		},
		{
			name: "get and list validate their arguments",
			gets: []getCheck{
				{typ: "", ns: "d", name: "p", wantErr: ErrInvalid, wantMsg: "empty Type"},
				{typ: "pod", ns: "d", name: "", wantErr: ErrInvalid, wantMsg: "empty Name"},
				{typ: "pod", ns: "\xff", name: "p", wantErr: ErrInvalid, wantMsg: "not valid UTF-8"},
			},
		},
	}
	for _, impl := range implementations {
		t.Run(impl.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					ctx := context.Background()
					s := impl.open(t)
					var err error
					for i, b := range tt.batches {
						err = s.Apply(ctx, b)
						if i < len(tt.batches)-1 && err != nil {
							t.Fatalf("Apply batch %d: %v", i, err)
						}
					}
					checkErr(t, "Apply", err, tt.wantErr, tt.wantMsg)
					for _, g := range tt.gets {
						got, err := s.Get(ctx, g.typ, g.ns, g.name)
						checkErr(t, "Get", err, g.wantErr, g.wantMsg)
						if g.wantErr == nil {
							if diff := cmp.Diff(g.want, got); diff != "" {
								t.Errorf("Get(%q, %q, %q) (-want +got):\n%s", g.typ, g.ns, g.name, diff)
							}
						}
					}
					for _, l := range tt.lists {
						got, err := s.List(ctx, l.typ, l.ns)
						if err != nil {
							t.Fatalf("List(%q, %q): %v", l.typ, l.ns, err)
						}
						if diff := cmp.Diff(l.want, got, cmpopts.EquateEmpty()); diff != "" {
							t.Errorf("List(%q, %q) (-want +got):\n%s", l.typ, l.ns, diff)
						}
					}
					n, err := s.Count(ctx)
					if err != nil {
						t.Fatalf("Count: %v", err)
					}
					if n != tt.wantCount {
						t.Errorf("Count = %d, want %d", n, tt.wantCount)
					}
				})
			}
		})
	}
}

func checkErr(t *testing.T, op string, err, want error, wantMsg string) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("%s: unexpected error: %v", op, err)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("%s: error %v, want one wrapping %q", op, err, want)
	case want != nil && !strings.Contains(err.Error(), wantMsg):
		t.Fatalf("%s: error %q does not contain %q", op, err, wantMsg)
	}
}

func TestListValidation(t *testing.T) {
	for _, impl := range implementations {
		t.Run(impl.name, func(t *testing.T) {
			s := impl.open(t)
			for _, tc := range []struct{ typ, ns, msg string }{
				{"", "", "list: empty Type"},
				{"pod", "a\x00", `Namespace "a\x00" contains a NUL byte`},
				{"p\xc3", "", `Type "p\xc3" is not valid UTF-8`},
			} {
				_, err := s.List(context.Background(), tc.typ, tc.ns)
				checkErr(t, "List", err, ErrInvalid, tc.msg)
			}
		})
	}
}

// TestValuesAreCopied: neither the caller's slice after Apply nor a returned
// slice is shared with the store.
func TestValuesAreCopied(t *testing.T) {
	for _, impl := range implementations {
		t.Run(impl.name, func(t *testing.T) {
			ctx := context.Background()
			s := impl.open(t)
			v := []byte("original")
			if err := s.Apply(ctx, []Change{{Op: OpPut, Object: Object{Type: "cm", Namespace: "d", Name: "c", Value: v}}}); err != nil {
				t.Fatal(err)
			}
			v[0] = 'X'
			got, err := s.Get(ctx, "cm", "d", "c")
			if err != nil {
				t.Fatal(err)
			}
			got.Value[1] = 'Y'
			list, err := s.List(ctx, "cm", "")
			if err != nil {
				t.Fatal(err)
			}
			list[0].Value[2] = 'Z'
			again, err := s.Get(ctx, "cm", "d", "c")
			if err != nil {
				t.Fatal(err)
			}
			if string(again.Value) != "original" {
				t.Errorf("stored value changed through an aliased slice: %q", again.Value)
			}
		})
	}
}

func TestClosed(t *testing.T) {
	for _, impl := range implementations {
		t.Run(impl.name, func(t *testing.T) {
			ctx := context.Background()
			s := impl.open(t)
			if err := s.Apply(ctx, []Change{put("pod", "d", "p", "1", "v")}); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Errorf("second Close: %v, want nil", err)
			}
			err := s.Apply(ctx, []Change{put("pod", "d", "q", "1", "v")})
			checkErr(t, "Apply", err, ErrClosed, "store: apply: store: closed")
			_, err = s.Get(ctx, "pod", "d", "p")
			checkErr(t, "Get", err, ErrClosed, "get")
			_, err = s.List(ctx, "pod", "")
			checkErr(t, "List", err, ErrClosed, "list")
			_, err = s.Count(ctx)
			checkErr(t, "Count", err, ErrClosed, "count")
		})
	}
}

func TestCancelledContext(t *testing.T) {
	for _, impl := range implementations {
		t.Run(impl.name, func(t *testing.T) {
			s := impl.open(t)
			if err := s.Apply(context.Background(), []Change{put("pod", "d", "p", "1", "v")}); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			err := s.Apply(ctx, []Change{put("pod", "d", "q", "1", "v")})
			checkErr(t, "Apply", err, context.Canceled, "apply")
			_, err = s.Get(ctx, "pod", "d", "p")
			checkErr(t, "Get", err, context.Canceled, "get")
			_, err = s.List(ctx, "pod", "d")
			checkErr(t, "List", err, context.Canceled, "list")
			_, err = s.Count(ctx)
			checkErr(t, "Count", err, context.Canceled, "count")
			// The cancelled batch left nothing behind.
			n, err := s.Count(context.Background())
			if err != nil || n != 1 {
				t.Errorf("Count = %d, %v; want 1, nil", n, err)
			}
		})
	}
}
