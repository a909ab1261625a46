// Package store is the edge's metadata store: every object the cloud sends to
// a node is persisted here before it is acknowledged, and edged, the
// MetaServer and the device twin read it back, also when the node is offline.
//
// SQLite is the real implementation (hand-written SQL, numbered embedded
// migrations, WAL with synchronous=FULL so that an acknowledged object
// survives a crash or power loss). Memory has the same semantics for unit
// tests of other packages; one test suite runs over both.
package store
