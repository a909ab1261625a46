// Package nodes keeps edge nodes' Node objects and Leases in the apiserver:
// registration when an edge connects, its reported status, and its
// heartbeat as a kube-node-lease Lease, the way the kubelet does for
// ordinary nodes.
//
// Registration is synchronous, so that the edge is acknowledged only after
// its Node exists. Status and heartbeats are asynchronous and coalesced per
// node: only the newest status is written, only when it changed (ignoring
// condition timestamps), when the node is not Ready, or when the last write
// is older than the resync period; lease renewals younger than a quarter of
// the lease duration are skipped. Current Node state comes from an informer
// restricted to edge nodes, never from a GET per heartbeat.
//
// A session that ends is forgotten, not marked NotReady: the
// node-lifecycle-controller does that after its grace period, so a quick
// reconnect does not flap the node.
package nodes
