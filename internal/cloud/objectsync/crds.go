package objectsync

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"
)

// crdFiles are the canonical CRD manifests; build/crds/reliablesyncs holds
// byte-identical copies for kubectl users (a test keeps them in step).
//
//go:embed crds/*.yaml
var crdFiles embed.FS

// crdResource is apiextensions.k8s.io/v1 customresourcedefinitions, used
// unstructured so that the module does not depend on apiextensions-apiserver.
var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

const (
	// establishTimeout bounds InstallCRDs' wait for the apiserver to serve the CRDs.
	establishTimeout = 60 * time.Second
	establishPoll    = 100 * time.Millisecond
)

// CRDs returns the ObjectSync and ClusterObjectSync CustomResourceDefinitions,
// decoded from the embedded manifests, sorted by file name.
func CRDs() ([]*unstructured.Unstructured, error) {
	names, err := fs.Glob(crdFiles, "crds/*.yaml")
	if err != nil {
		return nil, fmt.Errorf("objectsync: list embedded CRDs: %w", err)
	}
	slices.Sort(names)
	out := make([]*unstructured.Unstructured, 0, len(names))
	for _, name := range names {
		data, err := crdFiles.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("objectsync: read embedded %s: %w", name, err)
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(data, &u.Object); err != nil {
			return nil, fmt.Errorf("objectsync: decode embedded %s: %w", name, err)
		}
		if u.GetKind() != "CustomResourceDefinition" || u.GetName() == "" {
			return nil, fmt.Errorf("objectsync: embedded %s is not a named CustomResourceDefinition (kind %q)", name, u.GetKind())
		}
		out = append(out, u)
	}
	return out, nil
}

// InstallCRDs creates the CRDs that are missing (existing ones are left as
// they are, so that concurrent installers and older cloudcores agree) and
// waits until the apiserver reports every one Established.
func InstallCRDs(ctx context.Context, dyn dynamic.Interface) error {
	crds, err := CRDs()
	if err != nil {
		return err
	}
	return Install(ctx, dyn, crds)
}

// Install creates the given CRDs where missing and waits until each is
// Established; other components (devices) install their CRDs with it.
func Install(ctx context.Context, dyn dynamic.Interface, crds []*unstructured.Unstructured) error {
	client := dyn.Resource(crdResource)
	for _, crd := range crds {
		_, err := client.Create(ctx, crd, metav1.CreateOptions{FieldManager: fieldManager})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("objectsync: create CRD %s: %w", crd.GetName(), err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, establishTimeout)
	defer cancel()
	for _, crd := range crds {
		if err := waitEstablished(ctx, client, crd.GetName()); err != nil {
			return err
		}
	}
	return nil
}

// waitEstablished polls CRD name until its Established condition is True.
// NamesAccepted=False (a name clash with another CRD) never resolves by
// waiting, so it fails at once.
func waitEstablished(ctx context.Context, client dynamic.ResourceInterface, name string) error {
	t := time.NewTicker(establishPoll)
	defer t.Stop()
	last := "not read yet"
	for {
		u, err := client.Get(ctx, name, metav1.GetOptions{})
		switch {
		case err == nil:
			established, rejected, summary := crdConditions(u)
			if established {
				return nil
			}
			if rejected != "" {
				return fmt.Errorf("objectsync: CRD %s: names not accepted: %s", name, rejected)
			}
			last = summary
		case ctx.Err() == nil:
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("objectsync: CRD %s not Established (last seen: %s): %w", name, last, ctx.Err())
		case <-t.C:
		}
	}
}

// crdConditions reads status.conditions: whether Established is True, the
// message of NamesAccepted=False if so, and a summary for error messages.
func crdConditions(u *unstructured.Unstructured) (established bool, rejected, summary string) {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	var parts []string
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok {
			continue
		}
		typ, _ := m["type"].(string)
		status, _ := m["status"].(string)
		msg, _ := m["message"].(string)
		parts = append(parts, typ+"="+status)
		switch {
		case typ == "Established" && status == "True":
			established = true
		case typ == "NamesAccepted" && status == "False":
			rejected = msg
			if rejected == "" {
				rejected = "no message"
			}
		}
	}
	if len(parts) == 0 {
		return established, rejected, "no conditions"
	}
	return established, rejected, strings.Join(parts, ", ")
}
