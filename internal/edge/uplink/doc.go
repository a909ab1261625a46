// Package uplink carries what the edge reports to the cloud: pod statuses,
// final pod deletions, events and request/response queries (service-account
// tokens).
//
// Reports are level-triggered, like the cloud's delivery: the uplink keeps
// the newest pending report per key (a pod's status, a pod's deletion), not a
// log, so a pod whose status changes ten times while the cloud is away is
// reported once, with its newest status, when the session returns. Every
// report is retried until the cloud acknowledges it (operation "response"
// with parent_msg_id set) or refuses it (operation "error"); at most one
// message per key is in flight, so reports about one pod stay in order.
// Events are best effort: a bounded queue that drops the oldest when full.
//
// Queries are not retried: the caller gets the reply, or an error when the
// cloud is unreachable or does not answer in time, and decides (a token
// source keeps serving the token it has).
package uplink
