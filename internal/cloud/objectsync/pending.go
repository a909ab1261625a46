package objectsync

import (
	"slices"

	"github.com/kubeedge-go/kubeedge/internal/cloud/delivery"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// item is one node's acknowledgement of one key: the unit that is queued and
// coalesced. All of an item's records are written by one worker at a time
// (the workqueue never hands out an item that is being processed).
type item struct {
	node string
	key  wire.Resource
}

// op is the state an item's records must reach: apply's record present (if
// apply is set) and the records of deletes gone. deletes never holds
// apply.UID. An op taken by a worker is owned by it until it is finished.
type op struct {
	apply   *delivery.Acked
	deletes []string // object UIDs
}

// recordOp is the op for "node acknowledged a, replacing prev".
func recordOp(a, prev delivery.Acked) *op {
	o := &op{apply: &a}
	if prev.UID != "" && prev.UID != a.UID {
		o.deletes = []string{prev.UID}
	}
	return o
}

// forgetOp is the op for "node acknowledged the deletion of prev".
func forgetOp(prev delivery.Acked) *op {
	if prev.UID == "" {
		return &op{}
	}
	return &op{deletes: []string{prev.UID}}
}

// merge folds newer into older and returns the op that reaches newer's end
// state from any state older may have left half-written: newer's apply wins,
// and every record older wanted gone, or wrote under another UID, is deleted.
func merge(older, newer *op) *op {
	if older == nil {
		return newer
	}
	if newer == nil {
		return older
	}
	out := &op{apply: newer.apply}
	add := func(uid string) {
		if uid == "" || out.apply != nil && out.apply.UID == uid || slices.Contains(out.deletes, uid) {
			return
		}
		out.deletes = append(out.deletes, uid)
	}
	for _, uid := range older.deletes {
		add(uid)
	}
	if older.apply != nil {
		add(older.apply.UID)
	}
	for _, uid := range newer.deletes {
		add(uid)
	}
	return out
}
