// Package hub is EdgeHub: the edge's end of the cloud session. It dials the
// cloud over WebSocket or QUIC with the node certificate, sends keepalives,
// reconnects with capped, jittered exponential back-off (so that thousands of
// edges do not return to a restarted cloudcore in the same instant), and
// rate-limits what the edge uploads without ever delaying keepalives or acks.
package hub
