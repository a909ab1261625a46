// Package mapper is the SDK for KubeEdge-compatible device mappers: a
// mapper is
//
//	m, err := mapper.New(cfg, driver)
//	err = m.Run(ctx)
//
// and the SDK does the rest: it serves DMI v1beta1 DeviceMapperService on
// cfg.SocketPath, registers with edgecore's DeviceManagerService
// (MapperRegister with withData, retried with back-off while edgecore is
// absent and repeated whenever the connection to edgecore comes back, after
// which edgecore's device list is authoritative), runs each device, and
// stops cleanly when ctx is done.
//
// # Per device
//
// One goroutine per device connects (back-off between attempts), reads each
// polled property every collectCycle (nanoseconds; 0 means
// cfg.DefaultCollectCycle), takes values from subscriptions when the driver
// offers them (reading a subscribed property once per connection for its
// current value), and every reportCycle sends the twins that changed (all of
// them every cfg.StateRefresh) with ReportDeviceStatus: reported value with
// metadata {"timestamp" (ms), "type"} and observedDesired, the desired value
// last written. Desired values come from spec.properties[].desired (falling
// back to the status twin's observedDesired, which is where KubeEdge's
// mappers read them); a changed value is parsed for the model's property
// type, checked against its minimum/maximum and written, then read back and
// reported at once; desired values are applied again after every
// reconnect, since a restarted device may have lost them. An UpdateDevice that changes only desired values keeps
// the connection; any other change of the device or its model restarts it.
//
// Errors never stop other devices. A device whose configuration cannot be
// used (unknown or missing configData keys, unknown model, wrong protocol)
// is reported with state "unknown" and the reason in every twin's
// reported.metadata["error"]; a property whose visitor is wrong is reported
// with its error and the device is "unhealthy"; a write the device refuses
// is in observedDesired.metadata["error"] and is not retried until the
// desired value changes. States follow KubeEdge: "ok" (connected, all
// reads work), "unhealthy" (connected, some property fails), "offline"
// (cannot connect), "disconnected" (connection lost, reconnecting),
// "unknown" (not configured). ReportDeviceStates is sent on every change
// and every cfg.StateRefresh.
//
// Calls to edgecore go through one rate limiter per mapper (cfg.ReportQPS,
// cfg.ReportBurst); reports waiting for it coalesce per device, newest
// value per property, so an absent or slow edgecore costs memory per device,
// not per report. Push methods (pushMethod.http: POST of
// "<property>=<value>&time=..." form data as KubeEdge's mappers do;
// pushMethod.mqtt: publish of KubeEdge's DataModel JSON) run on a small
// worker pool with a bounded queue that drops rather than stalls
// collection. cfg.HealthAddr serves /healthz, /readyz and /devices.
//
// # The driver contract
//
// A protocol is a Driver (validation, no I/O) and the Device values it
// returns (one connection each); see their documentation. In short:
//
//   - Driver.NewDevice checks the protocol configData, Driver.ParseVisitor
//     each property's visitor configData. Read keys with convert.Config so
//     unknown, missing, mistyped and out-of-range keys are reported by name.
//   - Device.Connect / Read / Write / Close are called from the device's
//     goroutine only, never concurrently. Read returns a Go value that
//     convert.Format can render for the model's type; Write receives the
//     desired value already parsed and range-checked.
//   - Wrap ErrDisconnected for connection losses (the SDK reconnects); any
//     other error is about one property.
//   - Optionally implement Subscriber (pushed values) and Stater (a device's
//     own view of its health).
//
// A new protocol is therefore one small package: a Driver, a Device, the
// config parsing, and tests against a real peer with the mappertest
// package.
package mapper
