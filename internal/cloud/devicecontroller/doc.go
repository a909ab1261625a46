// Package devicecontroller is cloudcore's DeviceController.
//
// Downstream it is a delivery.Source: each Device goes to its
// spec.nodeName only, together with the DeviceModel it references, through
// the shared reliable delivery (ObjectSync bookkeeping, retransmission,
// coalescing). Devices are versioned for delivery by metadata.generation,
// not resourceVersion, so that the status writes below never send a device
// back to its edge.
//
// Upstream it takes the twin and state reports of edge nodes and writes them
// into Device.status, coalesced per device (newest wins), at most one write
// per device per interval and under one token bucket for the whole
// cloudcore; a node may only report for devices bound to it.
package devicecontroller
