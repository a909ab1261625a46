// Package v1beta1 is the DMI (Device Management Interface) v1beta1 gRPC API
// between edgecore's device manager and device mappers, wire-compatible with
// KubeEdge's: edgecore serves DeviceManagerService on a unix socket, each
// mapper serves DeviceMapperService on the socket it registers. The Go code
// is generated from api.proto by hack/gen-dmi.sh and committed.
package v1beta1
