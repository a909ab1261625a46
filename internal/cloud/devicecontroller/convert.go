package devicecontroller

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubeedge-go/kubeedge/pkg/apis/devices/v1beta1"
)

// deviceFrom converts an informer object into a Device.
func deviceFrom(obj any) (*v1beta1.Device, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, fmt.Errorf("devicecontroller: %T is not unstructured", obj)
	}
	var d v1beta1.Device
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err != nil {
		return nil, fmt.Errorf("devicecontroller: device %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	return &d, nil
}

// modelFrom converts an informer object into a DeviceModel.
func modelFrom(obj any) (*v1beta1.DeviceModel, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, fmt.Errorf("devicecontroller: %T is not unstructured", obj)
	}
	var m v1beta1.DeviceModel
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &m); err != nil {
		return nil, fmt.Errorf("devicecontroller: device model %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	return &m, nil
}
