package devicecontroller

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/kubeedge-go/kubeedge/internal/cloud/objectsync"
)

// crdFiles are the canonical devices.kubeedge.io CRD manifests;
// build/crds/devices holds byte-identical copies for kubectl users (a test
// keeps them in step).
//
//go:embed crds/*.yaml
var crdFiles embed.FS

// CRDs returns the DeviceModel and Device CustomResourceDefinitions, sorted
// by file name.
func CRDs() ([]*unstructured.Unstructured, error) {
	names, err := fs.Glob(crdFiles, "crds/*.yaml")
	if err != nil {
		return nil, fmt.Errorf("devicecontroller: list embedded CRDs: %w", err)
	}
	slices.Sort(names)
	out := make([]*unstructured.Unstructured, 0, len(names))
	for _, name := range names {
		data, err := crdFiles.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("devicecontroller: read embedded %s: %w", name, err)
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(data, &u.Object); err != nil {
			return nil, fmt.Errorf("devicecontroller: decode embedded %s: %w", name, err)
		}
		if u.GetKind() != "CustomResourceDefinition" || u.GetName() == "" {
			return nil, fmt.Errorf("devicecontroller: embedded %s is not a named CustomResourceDefinition", name)
		}
		out = append(out, u)
	}
	return out, nil
}

// InstallCRDs creates the devices CRDs that are missing and waits until
// they are Established (see objectsync.Install).
func InstallCRDs(ctx context.Context, dyn dynamic.Interface) error {
	crds, err := CRDs()
	if err != nil {
		return err
	}
	if err := objectsync.Install(ctx, dyn, crds); err != nil {
		return fmt.Errorf("devicecontroller: %w", err)
	}
	return nil
}
