package objectsync

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// TestCRDCopiesIdentical keeps build/crds/reliablesyncs (for kubectl users)
// byte-identical to the embedded manifests.
func TestCRDCopiesIdentical(t *testing.T) {
	embedded, err := filepath.Glob("crds/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	copies, err := filepath.Glob("../../../build/crds/reliablesyncs/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	base := func(paths []string) []string {
		var out []string
		for _, p := range paths {
			out = append(out, filepath.Base(p))
		}
		return out
	}
	if diff := cmp.Diff(base(embedded), base(copies)); diff != "" || len(embedded) != 2 {
		t.Fatalf("CRD files differ between internal/cloud/objectsync/crds and build/crds/reliablesyncs (-embedded +build):\n%s", diff)
	}
	for _, p := range embedded {
		a, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join("../../../build/crds/reliablesyncs", filepath.Base(p)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("build/crds/reliablesyncs/%s differs from internal/cloud/objectsync/%s: copy it over", filepath.Base(p), p)
		}
	}
}

func TestCRDs(t *testing.T) {
	crds, err := CRDs()
	if err != nil {
		t.Fatalf("CRDs: %v", err)
	}
	type shape struct {
		Name, Kind, Plural, Scope string
		ShortNames                []string
		Columns                   []string
		Status                    bool
		Fields                    []string
	}
	var got []shape
	for _, crd := range crds {
		o := crd.Object
		str := func(path ...string) string { v, _, _ := unstructured.NestedString(o, path...); return v }
		short, _, _ := unstructured.NestedStringSlice(o, "spec", "names", "shortNames")
		versions, _, _ := unstructured.NestedSlice(o, "spec", "versions")
		if len(versions) != 1 {
			t.Fatalf("%s has %d versions, want 1", crd.GetName(), len(versions))
		}
		v := versions[0].(map[string]any)
		if v["name"] != "v1alpha1" || v["served"] != true || v["storage"] != true {
			t.Errorf("%s version = %v %v %v, want v1alpha1 served storage", crd.GetName(), v["name"], v["served"], v["storage"])
		}
		_, status, _ := unstructured.NestedMap(v, "subresources", "status")
		cols, _, _ := unstructured.NestedSlice(v, "additionalPrinterColumns")
		var colNames []string
		for _, c := range cols {
			m := c.(map[string]any)
			colNames = append(colNames, m["name"].(string)+"="+m["jsonPath"].(string))
		}
		props := func(path ...string) []string {
			m, _, _ := unstructured.NestedMap(v, append([]string{"schema", "openAPIV3Schema", "properties"}, path...)...)
			var out []string
			for k, p := range m {
				out = append(out, k+":"+p.(map[string]any)["type"].(string))
			}
			return out
		}
		fields := append(props("spec", "properties"), props("status", "properties")...)
		got = append(got, shape{
			Name: crd.GetName(), Kind: str("spec", "names", "kind"), Plural: str("spec", "names", "plural"),
			Scope: str("spec", "scope"), ShortNames: short, Columns: colNames, Status: status, Fields: fields,
		})
		if str("spec", "group") != Group || crd.GetAPIVersion() != "apiextensions.k8s.io/v1" {
			t.Errorf("%s: group %q apiVersion %q", crd.GetName(), str("spec", "group"), crd.GetAPIVersion())
		}
	}
	cols := []string{"Kind=.spec.objectKind", "ObjectName=.spec.objectName", "ResourceVersion=.status.objectResourceVersion", "Age=.metadata.creationTimestamp"}
	fields := []string{"objectAPIVersion:string", "objectKind:string", "objectName:string", "objectResourceVersion:string"}
	want := []shape{
		{Name: "clusterobjectsyncs.reliablesyncs.kubeedge.io", Kind: "ClusterObjectSync", Plural: "clusterobjectsyncs", Scope: "Cluster", Columns: cols, Fields: fields},
		{Name: "objectsyncs.reliablesyncs.kubeedge.io", Kind: "ObjectSync", Plural: "objectsyncs", Scope: "Namespaced", ShortNames: []string{"os"}, Columns: cols, Fields: fields},
	}
	for i := range got {
		slices.Sort(got[i].Fields)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CRDs (-want +got):\n%s", diff)
	}
}

// crdWithConditions is a stored CRD as the apiserver reports it.
func crdWithConditions(t *testing.T, name string, conds ...map[string]any) runtime.Object {
	t.Helper()
	crds, err := CRDs()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range crds {
		if c.GetName() != name {
			continue
		}
		c = c.DeepCopy()
		list := make([]any, len(conds))
		for i, cond := range conds {
			list[i] = cond
		}
		if err := unstructured.SetNestedSlice(c.Object, list, "status", "conditions"); err != nil {
			t.Fatal(err)
		}
		return c
	}
	t.Fatalf("no CRD %s", name)
	return nil
}

func cond(typ, status, msg string) map[string]any {
	return map[string]any{"type": typ, "status": status, "message": msg}
}

func TestInstallCRDs(t *testing.T) {
	const osName, cos = "objectsyncs.reliablesyncs.kubeedge.io", "clusterobjectsyncs.reliablesyncs.kubeedge.io"
	t.Run("already established", func(t *testing.T) {
		dyn := newFakeDynamic(
			crdWithConditions(t, osName, cond("NamesAccepted", "True", ""), cond("Established", "True", "")),
			crdWithConditions(t, cos, cond("Established", "True", "")),
		)
		if err := InstallCRDs(context.Background(), dyn); err != nil {
			t.Fatalf("InstallCRDs: %v", err)
		}
	})
	t.Run("name clash", func(t *testing.T) {
		dyn := newFakeDynamic(
			crdWithConditions(t, cos, cond("Established", "True", "")),
			crdWithConditions(t, osName, cond("NamesAccepted", "False", `"os" is already in use`)),
		)
		err := InstallCRDs(context.Background(), dyn)
		if err == nil || !strings.Contains(err.Error(), `CRD objectsyncs.reliablesyncs.kubeedge.io: names not accepted: "os" is already in use`) {
			t.Errorf("InstallCRDs = %v, want a names-not-accepted error", err)
		}
	})
	t.Run("created but never established", func(t *testing.T) {
		dyn := newFakeDynamic()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		err := InstallCRDs(ctx, dyn)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "not Established (last seen: no conditions)") {
			t.Errorf("InstallCRDs = %v, want a deadline error saying it was not Established", err)
		}
		if _, err := dyn.Resource(crdResource).Get(context.Background(), cos, metav1.GetOptions{}); err != nil {
			t.Errorf("CRD %s not created: %v", cos, err)
		}
	})
}
