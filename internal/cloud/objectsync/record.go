package objectsync

import (
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kubeedge-go/kubeedge/internal/cloud/delivery"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// API group, version and resources of the records, as KubeEdge names them.
const (
	Group   = "reliablesyncs.kubeedge.io"
	Version = "v1alpha1"

	KindObjectSync        = "ObjectSync"
	KindClusterObjectSync = "ClusterObjectSync"
)

// Labels on every record written by Store. LoadAll needs both: the node to
// know whose acknowledgement it is, the type to rebuild the wire key. A label
// value holds at most 63 characters, so acknowledgements of nodes with longer
// names are not recorded (Record logs why); such nodes get resends after a
// cloudcore restart, nothing worse.
const (
	LabelNode = "reliablesyncs.kubeedge.io/node"
	LabelType = "reliablesyncs.kubeedge.io/type"
)

// fieldManager owns the fields Store applies.
const fieldManager = "cloudcore"

// Resources of the two record kinds.
var (
	ObjectSyncResource        = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "objectsyncs"}
	ClusterObjectSyncResource = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "clusterobjectsyncs"}
)

// ErrInvalidRecord is wrapped by every error about a record that cannot be
// written or read back.
var ErrInvalidRecord = errors.New("objectsync: invalid record")

// RecordName is KubeEdge's name for node's record of the object with uid.
func RecordName(node, uid string) string { return node + "." + uid }

// checkRecord reports why node's record of key with uid could not be
// written, or nil. A write the apiserver would reject is better refused at
// once than retried forever.
func checkRecord(node string, key wire.Resource, uid string) error {
	if err := wire.ValidateNodeName(node); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRecord, err)
	}
	if errs := validation.IsValidLabelValue(node); len(errs) > 0 {
		return fmt.Errorf("%w: node name %q cannot be the value of label %s: %s", ErrInvalidRecord, node, LabelNode, strings.Join(errs, "; "))
	}
	if err := key.Validate(); err != nil {
		return fmt.Errorf("%w: key %s: %w", ErrInvalidRecord, key, err)
	}
	if key.Name == "" {
		return fmt.Errorf("%w: key %s has no object name", ErrInvalidRecord, key)
	}
	if uid == "" {
		return fmt.Errorf("%w: key %s on node %s has an empty object UID", ErrInvalidRecord, key, node)
	}
	if errs := validation.IsDNS1123Subdomain(RecordName(node, uid)); len(errs) > 0 {
		return fmt.Errorf("%w: record name %q for key %s: %s", ErrInvalidRecord, RecordName(node, uid), key, strings.Join(errs, "; "))
	}
	return nil
}

// recordObject is the whole record of node's acknowledgement a of key, as
// applied: everything Store owns, spec and status together.
func recordObject(node string, key wire.Resource, a delivery.Acked) *unstructured.Unstructured {
	kind := KindObjectSync
	if key.Namespace == "" {
		kind = KindClusterObjectSync
	}
	meta := map[string]any{
		"name":   RecordName(node, a.UID),
		"labels": map[string]any{LabelNode: node, LabelType: string(key.Type)},
	}
	if key.Namespace != "" {
		meta["namespace"] = key.Namespace
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": Group + "/" + Version,
		"kind":       kind,
		"metadata":   meta,
		"spec": map[string]any{
			"objectAPIVersion": a.APIVersion,
			"objectKind":       a.Kind,
			"objectName":       key.Name,
		},
		"status": map[string]any{
			"objectResourceVersion": a.ResourceVersion,
		},
	}}
}

// decodeRecord reads back what recordObject wrote. The error names the
// first thing wrong.
func decodeRecord(u *unstructured.Unstructured) (node string, key wire.Resource, a delivery.Acked, err error) {
	fail := func(format string, args ...any) (string, wire.Resource, delivery.Acked, error) {
		return "", wire.Resource{}, delivery.Acked{}, fmt.Errorf("%w: %s: %s", ErrInvalidRecord, recordID(u), fmt.Sprintf(format, args...))
	}
	labels := u.GetLabels()
	node, ok := labels[LabelNode]
	if !ok {
		return fail("label %s missing", LabelNode)
	}
	if err := wire.ValidateNodeName(node); err != nil {
		return fail("label %s: %v", LabelNode, err)
	}
	typ, ok := labels[LabelType]
	if !ok {
		return fail("label %s missing", LabelType)
	}
	uid, ok := strings.CutPrefix(u.GetName(), node+".")
	if !ok || uid == "" {
		return fail("name is not {node}.{objectUID} for node %q", node)
	}
	var fields [4]string
	for i, path := range [][]string{
		{"spec", "objectName"}, {"spec", "objectAPIVersion"}, {"spec", "objectKind"}, {"status", "objectResourceVersion"},
	} {
		v, _, err := unstructured.NestedString(u.Object, path...)
		if err != nil {
			return fail("%s: %v", strings.Join(path, "."), err)
		}
		fields[i] = v
	}
	key = wire.Resource{Namespace: u.GetNamespace(), Type: wire.ResourceType(typ), Name: fields[0]}
	if key.Name == "" {
		return fail("spec.objectName is empty")
	}
	if err := key.Validate(); err != nil {
		return fail("key from namespace, label %s and spec.objectName: %v", LabelType, err)
	}
	if fields[3] == "" {
		return fail("status.objectResourceVersion is empty")
	}
	return node, key, delivery.Acked{UID: uid, APIVersion: fields[1], Kind: fields[2], ResourceVersion: fields[3]}, nil
}

// recordID names a record in logs and errors the way kubectl would.
func recordID(u *unstructured.Unstructured) string {
	kind := u.GetKind()
	if kind == "" {
		kind = KindObjectSync
		if u.GetNamespace() == "" {
			kind = KindClusterObjectSync
		}
	}
	if ns := u.GetNamespace(); ns != "" {
		return fmt.Sprintf("%s %s/%s", kind, ns, u.GetName())
	}
	return fmt.Sprintf("%s %s", kind, u.GetName())
}
