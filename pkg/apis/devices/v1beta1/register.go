package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the API group of devices.
const GroupName = "devices.kubeedge.io"

// SchemeGroupVersion is devices.kubeedge.io/v1beta1.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1beta1"}

// Resources of the group, for dynamic clients.
var (
	DevicesResource      = SchemeGroupVersion.WithResource("devices")
	DeviceModelsResource = SchemeGroupVersion.WithResource("devicemodels")
)

// AddToScheme registers the types with s. There is deliberately no package
// scheme builder: callers own their schemes.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion,
		&Device{}, &DeviceList{}, &DeviceModel{}, &DeviceModelList{})
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}
