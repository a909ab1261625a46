// Package hub is CloudHub: it accepts edge sessions over WebSocket and QUIC,
// checks that the node named by the session is the node named by the client
// certificate, keeps one session per node (a reconnect replaces the old one),
// drops sessions that stay silent past the keepalive timeout, and hands
// decoded messages to a Handler.
package hub
