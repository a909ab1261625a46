package devicetwin

// MQTT topics DeviceTwin answers on; {id} is {namespace}/{name}.

// DeviceTopic is "$hw/events/device/{id}/{suffix}".
func DeviceTopic(id, suffix string) string { return "$hw/events/device/" + id + "/" + suffix }

// NodeTopic is "$hw/events/node/{node}/{suffix}".
func NodeTopic(node, suffix string) string { return "$hw/events/node/" + node + "/" + suffix }

// Topic suffixes.
const (
	SuffixTwinUpdateResult   = "twin/update/result"
	SuffixTwinUpdateDelta    = "twin/update/delta"
	SuffixTwinUpdateDocument = "twin/update/document"
	SuffixTwinGetResult      = "twin/get/result"
	SuffixStateUpdateResult  = "state/update/result"
	SuffixStateGetResult     = "state/get/result"
	SuffixMembershipUpdated  = "membership/updated"
	SuffixMembershipResult   = "membership/get/result"
)

// ConnectedTopic and DisconnectedTopic announce cloud connectivity.
func ConnectedTopic(node string) string    { return "$hw/events/connected/" + node }
func DisconnectedTopic(node string) string { return "$hw/events/disconnected/" + node }

// Publication is one MQTT message to publish.
type Publication struct {
	Topic   string
	Payload []byte
}
