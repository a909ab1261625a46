package edged

import (
	"context"

	"k8s.io/apimachinery/pkg/types"
)

// pleg relists the runtime every RelistPeriod, like the kubelet's PLEG,
// and wakes the worker of every pod whose sandboxes or containers changed
// state (a container exited, was created or removed). Changes of pods edged
// does not know make housekeeping look for orphans.
func (e *Edged) pleg(ctx context.Context) error {
	t := e.clk.NewTicker(e.cfg.RelistPeriod)
	defer t.Stop()
	// The first relist diffs against nothing, so that it wakes every pod
	// with runtime objects: a container that a worker started and that
	// exited before that relist is noticed too.
	prev := map[string]plegEntry{}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C():
		}
		snap, err := e.snapshot(ctx)
		if err != nil {
			if ctx.Err() == nil {
				e.log.Debug("relist", "err", err)
			}
			continue
		}
		cur := plegState(snap)
		for uid := range plegDiff(prev, cur) {
			e.kickUID(uid)
		}
		prev = cur
	}
}

// plegEntry is the state of one sandbox or container, by id.
type plegEntry struct {
	uid   types.UID
	state int32
}

func plegState(s *runtimeSnapshot) map[string]plegEntry {
	m := make(map[string]plegEntry, len(s.sandboxes)+len(s.containers))
	for _, sb := range s.sandboxes {
		m["s/"+sb.Id] = plegEntry{types.UID(sb.Labels[labelPodUID]), int32(sb.State)}
	}
	for _, c := range s.containers {
		m["c/"+c.Id] = plegEntry{types.UID(c.Labels[labelPodUID]), int32(c.State)}
	}
	return m
}

// plegDiff returns the pods with an added, removed or changed entry.
func plegDiff(prev, cur map[string]plegEntry) map[types.UID]bool {
	out := map[types.UID]bool{}
	for id, c := range cur {
		if p, ok := prev[id]; !ok || p.state != c.state {
			out[c.uid] = true
		}
	}
	for id, p := range prev {
		if _, ok := cur[id]; !ok {
			out[p.uid] = true
		}
	}
	delete(out, "")
	return out
}
