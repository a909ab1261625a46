package eventbus

import (
	"errors"
	"testing"
)

func TestParseTopic(t *testing.T) {
	for _, tc := range []struct {
		topic string
		want  Route
		err   bool
	}{
		{topic: "$hw/events/device/default/t1/twin/update", want: Route{Kind: KindTwinUpdate, Device: "default/t1"}},
		{topic: "$hw/events/device/t1/twin/update", want: Route{Kind: KindTwinUpdate, Device: "default/t1", Short: true}},
		{topic: "$hw/events/device/ns/t1/twin/cloud_updated", want: Route{Kind: KindTwinCloudUpdated, Device: "ns/t1"}},
		{topic: "$hw/events/device/ns/t1/twin/get", want: Route{Kind: KindTwinGet, Device: "ns/t1"}},
		{topic: "$hw/events/device/ns/t1/state/update", want: Route{Kind: KindStateUpdate, Device: "ns/t1"}},
		{topic: "$hw/events/device/ns/t1/state/get", want: Route{Kind: KindStateGet, Device: "ns/t1"}},
		{topic: "$hw/events/device/ns/t1/updated", want: Route{Kind: KindDeviceUpdated, Device: "ns/t1"}},
		{topic: "$hw/events/node/node-a/membership/get", want: Route{Kind: KindMembershipGet}},
		{topic: "$hw/events/upload/anything", want: Route{Kind: KindUpload}},
		{topic: "app/user/x/y", want: Route{Kind: KindUser}},
		{topic: "$hw/events/node/node-b/membership/get", err: true},
		{topic: "$hw/events/device/a/b/c/twin/update", err: true},
		{topic: "$hw/events/device/Bad/t1/twin/update", err: true},
		{topic: "$hw/events/device//t1/twin/update", err: true},
		{topic: "$hw/events/device/ns/t1/twin/update/result", err: true},
		{topic: "$hw/events/device/twin/update", err: true},
		{topic: "random", err: true},
	} {
		got, err := ParseTopic("node-a", tc.topic)
		if tc.err {
			if err == nil || !errors.Is(err, ErrUnroutable) {
				t.Errorf("ParseTopic(%q) = %+v, %v; want ErrUnroutable", tc.topic, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseTopic(%q) = %+v, %v; want %+v", tc.topic, got, err, tc.want)
		}
	}
}

// FuzzParseTopic checks the router never panics and that device routes name
// a valid {namespace}/{name}.
func FuzzParseTopic(f *testing.F) {
	for _, s := range []string{"$hw/events/device/default/t1/twin/update", "$hw/events/device/t1/state/get", "$hw/events/node/n/membership/get", "x/user/y", "$hw/events/device//twin/get"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		r, err := ParseTopic("n", topic)
		if err != nil {
			return
		}
		if r.Device != "" {
			if _, err := ParseTopic("n", "$hw/events/device/"+r.Device+"/twin/get"); err != nil {
				t.Fatalf("device %q from %q does not route back: %v", r.Device, topic, err)
			}
		}
	})
}
