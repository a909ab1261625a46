package v1beta1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// PropertyType is the data type of a model property.
type PropertyType string

// Property types KubeEdge defines.
const (
	PropertyTypeInt     PropertyType = "INT"
	PropertyTypeFloat   PropertyType = "FLOAT"
	PropertyTypeDouble  PropertyType = "DOUBLE"
	PropertyTypeString  PropertyType = "STRING"
	PropertyTypeBoolean PropertyType = "BOOLEAN"
	PropertyTypeBytes   PropertyType = "BYTES"
	PropertyTypeStream  PropertyType = "STREAM"
)

// PropertyAccessMode says whether a property may be written.
type PropertyAccessMode string

// Access modes.
const (
	ReadWrite PropertyAccessMode = "ReadWrite"
	ReadOnly  PropertyAccessMode = "ReadOnly"
)

// DeviceModelSpec describes a kind of device: its protocol and properties.
type DeviceModelSpec struct {
	// Properties of devices of this model.
	Properties []ModelProperty `json:"properties,omitempty"`
	// Protocol is the protocol name devices of this model use (e.g. modbus).
	Protocol string `json:"protocol,omitempty"`
}

// ModelProperty is one property of a model (temperature, setpoint...).
type ModelProperty struct {
	Name        string             `json:"name,omitempty"`
	Description string             `json:"description,omitempty"`
	Type        PropertyType       `json:"type,omitempty"`
	AccessMode  PropertyAccessMode `json:"accessMode,omitempty"`
	// Minimum and Maximum bound numeric values; strings, as in KubeEdge.
	Minimum string `json:"minimum,omitempty"`
	Maximum string `json:"maximum,omitempty"`
	Unit    string `json:"unit,omitempty"`
}

// DeviceModel is a device template.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type DeviceModel struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec DeviceModelSpec `json:"spec,omitempty"`
}

// DeviceModelList is a list of DeviceModel.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type DeviceModelList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DeviceModel `json:"items"`
}

// Property returns the model property called name.
func (m *DeviceModel) Property(name string) (ModelProperty, bool) {
	for _, p := range m.Spec.Properties {
		if p.Name == name {
			return p, true
		}
	}
	return ModelProperty{}, false
}
