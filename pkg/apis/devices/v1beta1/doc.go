// Package v1beta1 holds the devices.kubeedge.io/v1beta1 API types,
// DeviceModel and Device, schema-compatible with KubeEdge so that existing
// manifests apply unchanged. The CRD manifests with OpenAPI validation are
// build/crds/devices/*.yaml.
//
// +k8s:deepcopy-gen=package
// +groupName=devices.kubeedge.io
package v1beta1
