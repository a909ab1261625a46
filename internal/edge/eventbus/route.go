package eventbus

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// Kind is what an incoming topic asks for.
type Kind int

// Kinds of incoming topics.
const (
	KindTwinUpdate Kind = iota + 1
	KindTwinCloudUpdated
	KindTwinGet
	KindStateUpdate
	KindStateGet
	KindDeviceUpdated
	KindMembershipGet
	KindUpload
	KindUser
)

func (k Kind) String() string {
	switch k {
	case KindTwinUpdate:
		return "twin/update"
	case KindTwinCloudUpdated:
		return "twin/cloud_updated"
	case KindTwinGet:
		return "twin/get"
	case KindStateUpdate:
		return "state/update"
	case KindStateGet:
		return "state/get"
	case KindDeviceUpdated:
		return "updated"
	case KindMembershipGet:
		return "membership/get"
	case KindUpload:
		return "upload"
	case KindUser:
		return "user"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Route is a parsed incoming topic.
type Route struct {
	Kind Kind
	// Device is "{namespace}/{name}" for device topics.
	Device string
	// Short is true when the topic named the device without a namespace
	// ($hw/events/device/{name}/...): results then go to the same short form.
	Short bool
}

// ErrUnroutable is wrapped by ParseTopic errors.
var ErrUnroutable = errors.New("eventbus: topic not routable")

var deviceSuffixes = []struct {
	suffix string
	kind   Kind
}{
	{"/twin/update", KindTwinUpdate},
	{"/twin/cloud_updated", KindTwinCloudUpdated},
	{"/twin/get", KindTwinGet},
	{"/state/update", KindStateUpdate},
	{"/state/get", KindStateGet},
	{"/updated", KindDeviceUpdated},
}

// Subscriptions lists the topic filters the bus subscribes to on node.
func Subscriptions(node string) []string {
	var out []string
	for _, s := range deviceSuffixes {
		out = append(out, "$hw/events/device/+/+"+s.suffix, "$hw/events/device/+"+s.suffix)
	}
	return append(out, "$hw/events/node/"+node+"/membership/get", "$hw/events/upload/#", "+/user/#")
}

// ParseTopic routes topic for node. Device ids are "{namespace}/{name}";
// a single level is read as a name in namespace "default".
func ParseTopic(node, topic string) (Route, error) {
	if len(topic) > 1024 {
		return Route{}, fmt.Errorf("%w: %d bytes", ErrUnroutable, len(topic))
	}
	if rest, ok := strings.CutPrefix(topic, "$hw/events/device/"); ok {
		for _, s := range deviceSuffixes {
			id, ok := strings.CutSuffix(rest, s.suffix)
			if !ok {
				continue
			}
			ns, name, two := strings.Cut(id, "/")
			short := !two
			if short {
				ns, name = "default", id
			}
			if strings.Contains(name, "/") {
				return Route{}, fmt.Errorf("%w: %q: device id %q has more than two levels", ErrUnroutable, topic, id)
			}
			r := wire.Resource{Namespace: ns, Type: wire.TypeDevice, Name: name}
			if err := r.Validate(); err != nil || ns == "" {
				return Route{}, fmt.Errorf("%w: %q: device id %q is not {namespace}/{name}", ErrUnroutable, topic, id)
			}
			return Route{Kind: s.kind, Device: ns + "/" + name, Short: short}, nil
		}
		return Route{}, fmt.Errorf("%w: %q: unknown device topic", ErrUnroutable, topic)
	}
	if topic == "$hw/events/node/"+node+"/membership/get" {
		return Route{Kind: KindMembershipGet}, nil
	}
	if strings.HasPrefix(topic, "$hw/events/upload/") {
		return Route{Kind: KindUpload}, nil
	}
	if first, rest, ok := strings.Cut(topic, "/"); ok && first != "" && !strings.HasPrefix(first, "$") && strings.HasPrefix(rest, "user/") {
		return Route{Kind: KindUser}, nil
	}
	return Route{}, fmt.Errorf("%w: %q", ErrUnroutable, topic)
}
