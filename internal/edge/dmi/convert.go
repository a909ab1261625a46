package dmi

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/kubeedge-go/kubeedge/internal/edge/devicetwin"
	"github.com/kubeedge-go/kubeedge/pkg/apis/devices/v1beta1"
	pb "github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1"
	"github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1/convert"
)

// Limits of mapper reports.
const (
	maxTwinsPerReport = 256
	maxValueBytes     = 64 << 10
	maxMetadataKeys   = 16
)

// customized converts configData to the DMI form. Scalars become wrapper
// types (convert.ToAnyMap); nested objects and arrays, which no wrapper
// carries, become their JSON text in a StringValue.
func customized(cv *v1beta1.CustomizedValue) (*pb.CustomizedValue, error) {
	if cv == nil || cv.Data == nil {
		return nil, nil
	}
	out := &pb.CustomizedValue{Data: make(map[string]*anypb.Any, len(cv.Data))}
	for k, v := range cv.Data {
		switch v.(type) {
		case map[string]any, []any:
			b, err := json.Marshal(v)
			if err != nil {
				return nil, fmt.Errorf("configData key %q: %w", k, err)
			}
			a, err := anypb.New(wrapperspb.String(string(b)))
			if err != nil {
				return nil, fmt.Errorf("configData key %q: %w", k, err)
			}
			out.Data[k] = a
			continue
		}
		a, err := convert.ToAny(v)
		if err != nil {
			return nil, fmt.Errorf("configData key %q: %w", k, err)
		}
		out.Data[k] = a
	}
	return out, nil
}

// modelToDMI converts a DeviceModel.
func modelToDMI(m *v1beta1.DeviceModel) *pb.DeviceModel {
	out := &pb.DeviceModel{Name: m.Name, Namespace: m.Namespace, Spec: &pb.DeviceModelSpec{}}
	for _, p := range m.Spec.Properties {
		out.Spec.Properties = append(out.Spec.Properties, &pb.ModelProperty{
			Name: p.Name, Description: p.Description, Type: string(p.Type), AccessMode: string(p.AccessMode),
			Minimum: p.Minimum, Maximum: p.Maximum, Unit: p.Unit,
		})
	}
	return out
}

// deviceToDMI converts a mapper view of a device.
func deviceToDMI(v devicetwin.DeviceView) (*pb.Device, error) {
	d := v.Device
	out := &pb.Device{Name: d.Name, Namespace: d.Namespace, Spec: &pb.DeviceSpec{
		DeviceModelReference: d.ModelName(),
		Protocol:             &pb.ProtocolConfig{ProtocolName: d.Spec.Protocol.ProtocolName},
	}, Status: &pb.DeviceStatus{}}
	cd, err := customized(d.Spec.Protocol.ConfigData)
	if err != nil {
		return nil, fmt.Errorf("device %s/%s protocol: %w", d.Namespace, d.Name, err)
	}
	out.Spec.Protocol.ConfigData = cd
	for _, p := range d.Spec.Properties {
		dp := &pb.DeviceProperty{
			Name:          p.Name,
			ReportCycle:   p.ReportCycle,
			CollectCycle:  p.CollectCycle,
			ReportToCloud: p.ReportToCloud,
			Visitors:      &pb.VisitorConfig{ProtocolName: p.Visitors.ProtocolName},
		}
		if p.Desired.Value != "" || len(p.Desired.Metadata) > 0 {
			dp.Desired = &pb.TwinProperty{Value: p.Desired.Value, Metadata: p.Desired.Metadata}
		}
		vd, err := customized(p.Visitors.ConfigData)
		if err != nil {
			return nil, fmt.Errorf("device %s/%s property %q visitors: %w", d.Namespace, d.Name, p.Name, err)
		}
		dp.Visitors.ConfigData = vd
		dp.PushMethod = pushMethod(p.PushMethod)
		out.Spec.Properties = append(out.Spec.Properties, dp)
	}
	return out, nil
}

func pushMethod(pm *v1beta1.PushMethod) *pb.PushMethod {
	if pm == nil {
		return nil
	}
	out := &pb.PushMethod{}
	if h := pm.HTTP; h != nil {
		out.Http = &pb.PushMethodHTTP{Hostname: h.HostName, Port: h.Port, Requestpath: h.RequestPath, Timeout: h.Timeout}
	}
	if m := pm.MQTT; m != nil {
		out.Mqtt = &pb.PushMethodMQTT{Address: m.Address, Topic: m.Topic, Qos: m.QoS, Retained: m.Retained}
	}
	if o := pm.OTEL; o != nil {
		out.Otel = &pb.PushMethodOTEL{EndpointURL: o.EndpointURL}
	}
	if db := pm.DBMethod; db != nil {
		out.DbMethod = &pb.DBMethod{}
		if i := db.Influxdb2; i != nil {
			x := &pb.DBMethodInfluxdb2{}
			if c := i.Influxdb2ClientConfig; c != nil {
				x.Influxdb2ClientConfig = &pb.Influxdb2ClientConfig{Url: c.URL, Org: c.Org, Bucket: c.Bucket}
			}
			if c := i.Influxdb2DataConfig; c != nil {
				x.Influxdb2DataConfig = &pb.Influxdb2DataConfig{Measurement: c.Measurement, Tag: c.Tag, FieldKey: c.FieldKey}
			}
			out.DbMethod.Influxdb2 = x
		}
		if r := db.Redis; r != nil && r.RedisClientConfig != nil {
			c := r.RedisClientConfig
			out.DbMethod.Redis = &pb.DBMethodRedis{RedisClientConfig: &pb.RedisClientConfig{Addr: c.Addr, Db: int32(c.DB), Poolsize: int32(c.Poolsize), MinIdleConns: int32(c.MinIdleConns)}}
		}
		if t := db.TDEngine; t != nil && t.TDEngineClientConfig != nil {
			out.DbMethod.Tdengine = &pb.DBMethodTDEngine{TdEngineClientConfig: &pb.TDEngineClientConfig{Addr: t.TDEngineClientConfig.Addr, Dbname: t.TDEngineClientConfig.DBName}}
		}
		if m := db.Mysql; m != nil && m.MySQLClientConfig != nil {
			c := m.MySQLClientConfig
			out.DbMethod.Mysql = &pb.DBMethodMySQL{MysqlClientConfig: &pb.MySQLClientConfig{Addr: c.Addr, Database: c.Database, UserName: c.UserName}}
		}
	}
	return out
}

// errBadReport is wrapped by reportsFromDMI errors.
var errBadReport = errors.New("dmi: bad report")

// deviceID builds "{namespace}/{name}"; an empty namespace is "default", as
// KubeEdge mappers written before namespaces send none.
func deviceID(namespace, name string) (string, error) {
	if namespace == "" {
		namespace = "default"
	}
	if name == "" || strings.Contains(name, "/") || strings.Contains(namespace, "/") {
		return "", fmt.Errorf("%w: device %q in namespace %q is not a valid device name", errBadReport, name, namespace)
	}
	return namespace + "/" + name, nil
}

// reportsFromDMI converts a ReportDeviceStatus request into twin reports.
func reportsFromDMI(st *pb.DeviceStatus) ([]devicetwin.Report, error) {
	if st == nil || len(st.Twins) == 0 {
		return nil, fmt.Errorf("%w: reportedDevice has no twins", errBadReport)
	}
	if len(st.Twins) > maxTwinsPerReport {
		return nil, fmt.Errorf("%w: %d twins, limit %d", errBadReport, len(st.Twins), maxTwinsPerReport)
	}
	seen := map[string]bool{}
	out := make([]devicetwin.Report, 0, len(st.Twins))
	for i, tw := range st.Twins {
		if tw == nil || tw.PropertyName == "" {
			return nil, fmt.Errorf("%w: twins[%d] has no propertyName", errBadReport, i)
		}
		if seen[tw.PropertyName] {
			return nil, fmt.Errorf("%w: property %q reported twice", errBadReport, tw.PropertyName)
		}
		seen[tw.PropertyName] = true
		r := devicetwin.Report{Property: tw.PropertyName}
		// No value yet and no error: nothing to say about it this time.
		if p := tw.Reported; p != nil && (p.Value != "" || p.Metadata["error"] != "") {
			if err := checkTwinProperty(p); err != nil {
				return nil, fmt.Errorf("%w: property %q reported: %v", errBadReport, tw.PropertyName, err)
			}
			v := p.Value
			r.Reported = &v
			r.Metadata = p.Metadata
		}
		// An observed desired value, or the error that kept the mapper from
		// applying the desired value (then the value is empty).
		if p := tw.ObservedDesired; p != nil && (p.Value != "" || p.Metadata["error"] != "") {
			if err := checkTwinProperty(p); err != nil {
				return nil, fmt.Errorf("%w: property %q observedDesired: %v", errBadReport, tw.PropertyName, err)
			}
			v := p.Value
			r.ObservedDesired = &v
			r.ObservedMetadata = p.Metadata
		}
		if r.Reported == nil && r.ObservedDesired == nil {
			if tw.Reported != nil || tw.ObservedDesired != nil {
				continue // present but empty: a property not read yet
			}
			return nil, fmt.Errorf("%w: property %q has neither reported nor observedDesired", errBadReport, tw.PropertyName)
		}
		out = append(out, r)
	}
	return out, nil
}

func checkTwinProperty(p *pb.TwinProperty) error {
	if len(p.Value) > maxValueBytes {
		return fmt.Errorf("value is %d bytes, limit %d", len(p.Value), maxValueBytes)
	}
	if len(p.Metadata) > maxMetadataKeys {
		return fmt.Errorf("%d metadata keys, limit %d", len(p.Metadata), maxMetadataKeys)
	}
	return nil
}
