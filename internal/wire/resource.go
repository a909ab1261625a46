package wire

import (
	"errors"
	"fmt"
	"strings"
)

// ResourceType is the kind of object a message is about, as spelled on the wire.
type ResourceType string

// Resource types used on the wire. KubeEdge spells them in lower case without separators.
const (
	TypePod                 ResourceType = "pod"
	TypePodList             ResourceType = "podlist"
	TypePodStatus           ResourceType = "podstatus"
	TypePodPatch            ResourceType = "podpatch"
	TypeConfigMap           ResourceType = "configmap"
	TypeSecret              ResourceType = "secret"
	TypeServiceAccountToken ResourceType = "serviceaccounttoken"
	TypeNode                ResourceType = "node"
	TypeNodeStatus          ResourceType = "nodestatus"
	TypeNodePatch           ResourceType = "nodepatch"
	TypeLease               ResourceType = "lease"
	TypeEvent               ResourceType = "event"
	TypeService             ResourceType = "service"
	TypeEndpoints           ResourceType = "endpoints"
	TypePersistentVolume    ResourceType = "persistentvolume"
	TypePVC                 ResourceType = "persistentvolumeclaim"
	TypeVolumeAttachment    ResourceType = "volumeattachment"
	TypeRule                ResourceType = "rule"
	TypeRuleEndpoint        ResourceType = "ruleendpoint"
	TypeMembership          ResourceType = "membership"
	TypeTwin                ResourceType = "twin"
	TypeDevice              ResourceType = "device"
	TypeDeviceModel         ResourceType = "devicemodel"
	// TypeStream asks the edge to open a stream tunnel (see StreamRequest).
	TypeStream ResourceType = "stream"
)

var knownTypes = map[ResourceType]bool{
	TypePod: true, TypePodList: true, TypePodStatus: true, TypePodPatch: true,
	TypeConfigMap: true, TypeSecret: true, TypeServiceAccountToken: true,
	TypeNode: true, TypeNodeStatus: true, TypeNodePatch: true, TypeLease: true,
	TypeEvent: true, TypeService: true, TypeEndpoints: true,
	TypePersistentVolume: true, TypePVC: true, TypeVolumeAttachment: true,
	TypeRule: true, TypeRuleEndpoint: true,
	TypeMembership: true, TypeTwin: true, TypeDevice: true, TypeDeviceModel: true,
	TypeStream: true,
}

// Known reports whether t is a resource type this implementation understands.
func (t ResourceType) Known() bool { return knownTypes[t] }

// NullNamespace is how cluster-scoped objects spell their namespace on the wire.
const NullNamespace = "null"

// ErrBadResource is wrapped by every resource-key parse error.
var ErrBadResource = errors.New("wire: bad resource")

// Resource identifies an object on the wire: "{namespace}/{type}/{name}".
// Namespace is "" for cluster-scoped objects (spelled "null" on the wire).
// Name may be empty for list-like types (e.g. "default/podlist").
type Resource struct {
	Namespace string
	Type      ResourceType
	Name      string
}

// String formats r the way KubeEdge puts it on the wire.
func (r Resource) String() string {
	ns := r.Namespace
	if ns == "" {
		ns = NullNamespace
	}
	if r.Name == "" {
		return ns + "/" + string(r.Type)
	}
	return ns + "/" + string(r.Type) + "/" + r.Name
}

// IsZero reports whether r is the zero Resource (messages such as keepalives carry none).
func (r Resource) IsZero() bool { return r == Resource{} }

// Validate checks every part of r; the error names the offending part.
func (r Resource) Validate() error {
	if r.Namespace != "" {
		if err := validateLabel(r.Namespace); err != nil {
			return fmt.Errorf("%w: namespace %q: %v", ErrBadResource, r.Namespace, err)
		}
	}
	if !r.Type.Known() {
		return fmt.Errorf("%w: unknown resource type %q", ErrBadResource, r.Type)
	}
	if r.Name != "" {
		if err := validateSubdomain(r.Name); err != nil {
			return fmt.Errorf("%w: name %q: %v", ErrBadResource, r.Name, err)
		}
	}
	return nil
}

// ParseResource parses and validates "{namespace}/{type}[/{name}]".
func ParseResource(s string) (Resource, error) {
	if len(s) > 512 {
		return Resource{}, fmt.Errorf("%w: %d bytes, longer than 512", ErrBadResource, len(s))
	}
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return Resource{}, fmt.Errorf("%w: %q is not {namespace}/{type}[/{name}]", ErrBadResource, s)
	}
	r := Resource{Type: ResourceType(parts[1])}
	if parts[0] != NullNamespace {
		if parts[0] == "" {
			return Resource{}, fmt.Errorf("%w: %q has an empty namespace (cluster scope is %q)", ErrBadResource, s, NullNamespace)
		}
		r.Namespace = parts[0]
	}
	if len(parts) == 3 {
		if parts[2] == "" {
			return Resource{}, fmt.Errorf("%w: %q has an empty name", ErrBadResource, s)
		}
		r.Name = parts[2]
	}
	if err := r.Validate(); err != nil {
		return Resource{}, err
	}
	return r, nil
}

// NodeResource is a resource addressed to one node, the form used inside the
// cloud: "node/{nodeName}/{namespace}/{type}/{name}".
type NodeResource struct {
	Node     string
	Resource Resource
}

// String formats nr in KubeEdge's cloud-internal form.
func (nr NodeResource) String() string { return "node/" + nr.Node + "/" + nr.Resource.String() }

// ParseNodeResource parses "node/{nodeName}/{namespace}/{type}[/{name}]".
func ParseNodeResource(s string) (NodeResource, error) {
	rest, ok := strings.CutPrefix(s, "node/")
	if !ok {
		return NodeResource{}, fmt.Errorf("%w: %q does not start with node/", ErrBadResource, s)
	}
	node, res, ok := strings.Cut(rest, "/")
	if !ok {
		return NodeResource{}, fmt.Errorf("%w: %q has no resource after the node name", ErrBadResource, s)
	}
	if err := ValidateNodeName(node); err != nil {
		return NodeResource{}, err
	}
	r, err := ParseResource(res)
	if err != nil {
		return NodeResource{}, err
	}
	return NodeResource{Node: node, Resource: r}, nil
}

// ValidateNodeName checks that name is a valid Kubernetes node name (a DNS subdomain).
func ValidateNodeName(name string) error {
	if err := validateSubdomain(name); err != nil {
		return fmt.Errorf("%w: node name %q: %v", ErrBadResource, name, err)
	}
	return nil
}

// validateSubdomain implements RFC 1123 subdomain rules as Kubernetes applies them to names.
func validateSubdomain(s string) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	if len(s) > 253 {
		return fmt.Errorf("%d characters, more than 253", len(s))
	}
	for _, label := range strings.Split(s, ".") {
		if err := validateLabelChars(label); err != nil {
			return err
		}
	}
	return nil
}

// validateLabel implements RFC 1123 label rules (namespaces).
func validateLabel(s string) error {
	if len(s) > 63 {
		return fmt.Errorf("%d characters, more than 63", len(s))
	}
	return validateLabelChars(s)
}

func validateLabelChars(label string) error {
	if label == "" {
		return errors.New("empty label (leading, trailing or double dot)")
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if alnum || c == '-' && i > 0 && i < len(label)-1 {
			continue
		}
		return fmt.Errorf("character %q at %d: only lower-case letters, digits and inner '-' are allowed", c, i)
	}
	return nil
}
