// Package devicetwin is edgecore's DeviceTwin: the devices bound to this
// node (membership, from the Device objects MetaManager persisted), their
// state, and for each property the expected (desired) and actual (reported)
// value with separate cloud and edge versions.
//
// One goroutine owns all state. Requests (MQTT twin updates, mapper reports,
// queries) and notifications (store changes, cloud acknowledgements,
// connectivity) are applied in batches; each batch is persisted in one store
// transaction before any request of it is answered, so an update that was
// acknowledged survives kill -9 (group commit). Reported state that the cloud
// has not acknowledged yet is kept per device as a sequence number above the
// acknowledged one, in the same persisted document, and resent in batches
// after reconnecting.
//
// The twin logic itself (versions, deltas, conflicts, type and range checks)
// is pure functions in twin.go and validate.go, tested without I/O.
package devicetwin
