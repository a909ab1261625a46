package metamanager

import (
	"context"
	"testing"

	"github.com/kubeedge-go/kubeedge/internal/store"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// FuzzToChange checks the promise persist relies on: a message toChange
// accepts never makes Store.Apply fail, so one bad message cannot fail a
// whole batch.
func FuzzToChange(f *testing.F) {
	f.Add([]byte(`{"header":{"msg_id":"1","resourceversion":"5"},"route":{"source":"edgecontroller","group":"resource","operation":"insert","resource":"default/configmap/cm"},"content":{"metadata":{"name":"cm","namespace":"default"}}}`))
	f.Add([]byte(`{"header":{"msg_id":"1"},"route":{"operation":"update","resource":"null/node/n1"},"content":{"metadata":{"name":"n1","resourceVersion":"7\u0000"}}}`))
	f.Add([]byte(`{"header":{"msg_id":"1","resourceversion":"\u0000"},"route":{"operation":"delete","resource":"ns/secret/s"},"content":null}`))
	f.Add([]byte(`{"header":{"msg_id":"1"},"route":{"operation":"insert","resource":"ns/pod/p"},"content":"x"}`))
	f.Fuzz(func(t *testing.T, frame []byte) {
		m, err := wire.Decode(frame, 0)
		if err != nil {
			return
		}
		ch, err := toChange(m)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("rejection without a message")
			}
			return
		}
		if err := store.NewMemory().Apply(context.Background(), []store.Change{ch}); err != nil {
			t.Fatalf("toChange accepted %s %s but Apply failed: %v", m.Operation, m.Resource, err)
		}
	})
}
