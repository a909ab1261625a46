package v1beta1

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestMethodPaths pins the gRPC method paths: they are what a KubeEdge mapper
// or edgecore puts on the wire, so a rename here would break interop.
func TestMethodPaths(t *testing.T) {
	want := map[string]string{
		DeviceManagerService_MapperRegister_FullMethodName:     "/v1beta1.DeviceManagerService/MapperRegister",
		DeviceManagerService_ReportDeviceStatus_FullMethodName: "/v1beta1.DeviceManagerService/ReportDeviceStatus",
		DeviceManagerService_ReportDeviceStates_FullMethodName: "/v1beta1.DeviceManagerService/ReportDeviceStates",
		DeviceMapperService_RegisterDevice_FullMethodName:      "/v1beta1.DeviceMapperService/RegisterDevice",
		DeviceMapperService_RemoveDevice_FullMethodName:        "/v1beta1.DeviceMapperService/RemoveDevice",
		DeviceMapperService_UpdateDevice_FullMethodName:        "/v1beta1.DeviceMapperService/UpdateDevice",
		DeviceMapperService_CreateDeviceModel_FullMethodName:   "/v1beta1.DeviceMapperService/CreateDeviceModel",
		DeviceMapperService_RemoveDeviceModel_FullMethodName:   "/v1beta1.DeviceMapperService/RemoveDeviceModel",
		DeviceMapperService_UpdateDeviceModel_FullMethodName:   "/v1beta1.DeviceMapperService/UpdateDeviceModel",
		DeviceMapperService_GetDevice_FullMethodName:           "/v1beta1.DeviceMapperService/GetDevice",
	}
	for got, w := range want {
		if got != w {
			t.Errorf("method path %q, want %q", got, w)
		}
	}
}

// TestFieldNumbers pins the field numbers KubeEdge's v1beta1 uses, for the
// messages whose numbering is easy to get wrong.
func TestFieldNumbers(t *testing.T) {
	cases := []struct {
		msg    proto.Message
		fields map[string]protoreflect.FieldNumber
	}{
		{&Device{}, map[string]protoreflect.FieldNumber{"name": 1, "spec": 2, "status": 3, "namespace": 4}},
		{&DeviceModel{}, map[string]protoreflect.FieldNumber{"name": 1, "spec": 2, "namespace": 3}},
		{&DeviceProperty{}, map[string]protoreflect.FieldNumber{"name": 1, "desired": 2, "visitors": 3, "reportCycle": 4, "collectCycle": 5, "reportToCloud": 6, "pushMethod": 7}},
		{&PushMethod{}, map[string]protoreflect.FieldNumber{"http": 1, "mqtt": 2, "otel": 3, "dbMethod": 4}},
		{&MapperInfo{}, map[string]protoreflect.FieldNumber{"name": 1, "version": 2, "api_version": 3, "protocol": 4, "address": 5, "state": 6}},
		{&ReportDeviceStatusRequest{}, map[string]protoreflect.FieldNumber{"deviceName": 1, "reportedDevice": 2, "deviceNamespace": 3}},
		{&ReportDeviceStatesRequest{}, map[string]protoreflect.FieldNumber{"deviceName": 1, "deviceNamespace": 2, "state": 3}},
		{&Twin{}, map[string]protoreflect.FieldNumber{"propertyName": 1, "observedDesired": 2, "reported": 3}},
		{&ModelProperty{}, map[string]protoreflect.FieldNumber{"name": 1, "description": 2, "type": 3, "accessMode": 4, "minimum": 5, "maximum": 6, "unit": 7}},
	}
	for _, c := range cases {
		md := c.msg.ProtoReflect().Descriptor()
		if md.Fields().Len() != len(c.fields) {
			t.Errorf("%s has %d fields, want %d", md.FullName(), md.Fields().Len(), len(c.fields))
		}
		for name, num := range c.fields {
			f := md.Fields().ByName(protoreflect.Name(name))
			if f == nil {
				t.Errorf("%s: no field %q", md.FullName(), name)
				continue
			}
			if f.Number() != num {
				t.Errorf("%s.%s is field %d, want %d", md.FullName(), name, f.Number(), num)
			}
		}
	}
}

// TestRoundTrip checks that a device with Any-wrapped config survives the
// wire encoding.
func TestRoundTrip(t *testing.T) {
	port, err := anypb.New(wrapperspb.Float(502))
	if err != nil {
		t.Fatal(err)
	}
	in := &Device{Name: "d", Namespace: "default", Spec: &DeviceSpec{
		DeviceModelReference: "m",
		Protocol:             &ProtocolConfig{ProtocolName: "modbus", ConfigData: &CustomizedValue{Data: map[string]*anypb.Any{"port": port}}},
	}}
	b, err := proto.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	out := &Device{}
	if err := proto.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(in, out) {
		t.Fatalf("round trip changed the device: %v -> %v", in, out)
	}
}
