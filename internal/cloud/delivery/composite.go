package delivery

import "github.com/kubeedge-go/kubeedge/internal/wire"

// Composite is a Source made of several, so that EdgeController and
// DeviceController share one Delivery (one window, one retry timer and one
// ObjectSync bookkeeping per node). The sources must serve disjoint resource
// types: Lookup asks each in turn and takes the first that wants the key.
type Composite []Source

var _ Source = Composite(nil)

// Desired lists every source's keys for node.
func (c Composite) Desired(node string) []wire.Resource {
	var out []wire.Resource
	for _, s := range c {
		out = append(out, s.Desired(node)...)
	}
	return out
}

// Lookup returns the object of the first source that wants key on node.
func (c Composite) Lookup(node string, key wire.Resource) (Object, bool) {
	for _, s := range c {
		if o, ok := s.Lookup(node, key); ok {
			return o, true
		}
	}
	return Object{}, false
}

// HasSynced reports whether every source has synced.
func (c Composite) HasSynced() bool {
	for _, s := range c {
		if !s.HasSynced() {
			return false
		}
	}
	return true
}
