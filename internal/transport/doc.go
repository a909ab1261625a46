// Package transport carries wire frames between cloud and edge over
// WebSocket (text frames, KubeEdge-compatible) or IETF QUIC (one
// bidirectional stream of length-prefixed frames).
//
// A Conn has one reader and one writer at a time; it is not safe for
// concurrent reads or concurrent writes.
package transport
