// Package delivery sends each edge node the objects it should have, reliably.
//
// It is level-triggered: for every node it keeps a set of dirty keys, not a
// log of events. When a key is pumped, the node's desired object is looked up
// from the Source at that moment and compared with the resourceVersion the
// edge last acknowledged: equal means nothing to send, so bursts of updates
// coalesce to the newest version, and a key the node should no longer have
// (but acknowledged once) becomes a delete. At most one message per key is in
// flight (in order per object); up to Window keys per node are in flight at
// once; a message not acknowledged in time is retried with exponential
// back-off. Acknowledged versions are handed to an AckStore (ObjectSync
// records) so that a restarted cloudcore resends nothing already acked.
package delivery
