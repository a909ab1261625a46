// Package dmi is edgecore's DMI v1beta1 server: mappers register on a unix
// socket (DeviceManagerService), report twins and states into DeviceTwin,
// and receive their devices and models through a client of their own
// DeviceMapperService.
//
// Pushing to mappers is level-triggered, like the cloud's delivery: DeviceTwin
// says which device may have changed, and a worker per mapper compares what
// the device and its model look like now (the mapper view, with the twin's
// expected values as desired values) with what it last sent that mapper,
// and sends RegisterDevice, UpdateDevice or RemoveDevice (and the model calls)
// for the difference. A failed call is retried with back-off; a mapper that
// registers again starts from what the registration answer gave it.
//
// Each mapper has its own rate limiter for its reports (KubeEdge shares one
// 1 request/s limiter across all mappers).
package dmi
