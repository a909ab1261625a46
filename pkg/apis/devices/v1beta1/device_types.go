package v1beta1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DeviceSpec is one device instance.
type DeviceSpec struct {
	// DeviceModelRef names the DeviceModel in the device's namespace.
	DeviceModelRef *corev1.LocalObjectReference `json:"deviceModelRef,omitempty"`
	// NodeName is the edge node the device is attached to; the device and its
	// model are delivered to that node only.
	NodeName string `json:"nodeName,omitempty"`
	// Properties of the device, unique by name.
	Properties []DeviceProperty `json:"properties,omitempty"`
	// Protocol says how the mapper reaches the device.
	Protocol ProtocolConfig `json:"protocol,omitempty"`
	// Methods group properties that device methods control.
	Methods []DeviceMethod `json:"methods,omitempty"`
}

// DeviceStatus is what the edge reports.
type DeviceStatus struct {
	Twins          []Twin `json:"twins,omitempty"`
	State          string `json:"state,omitempty"`
	LastOnlineTime string `json:"lastOnlineTime,omitempty"`
	// ReportToCloud and ReportCycle (ns) configure state reports.
	ReportToCloud bool  `json:"reportToCloud,omitempty"`
	ReportCycle   int64 `json:"reportCycle,omitempty"`
}

// Twin is the reported state of one property.
type Twin struct {
	PropertyName string       `json:"propertyName,omitempty"`
	Reported     TwinProperty `json:"reported,omitempty"`
	// ObservedDesired is the desired value the mapper last received.
	ObservedDesired TwinProperty `json:"observedDesired,omitempty"`
}

// TwinProperty is a value with metadata (timestamp, type).
type TwinProperty struct {
	// Value is always a string, whatever the property type.
	Value    string            `json:"value"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// ProtocolConfig is the protocol and its free-form configuration.
type ProtocolConfig struct {
	ProtocolName string           `json:"protocolName,omitempty"`
	ConfigData   *CustomizedValue `json:"configData,omitempty"`
}

// DeviceProperty is one property of a device instance.
type DeviceProperty struct {
	Name string `json:"name,omitempty"`
	// Desired is the value the user wants the device to have.
	Desired  TwinProperty  `json:"desired,omitempty"`
	Visitors VisitorConfig `json:"visitors,omitempty"`
	// ReportCycle and CollectCycle are durations in nanoseconds.
	ReportCycle   int64       `json:"reportCycle,omitempty"`
	CollectCycle  int64       `json:"collectCycle,omitempty"`
	ReportToCloud bool        `json:"reportToCloud,omitempty"`
	PushMethod    *PushMethod `json:"pushMethod,omitempty"`
}

// DeviceMethod names properties a method controls.
type DeviceMethod struct {
	Name          string   `json:"name,omitempty"`
	Description   string   `json:"description,omitempty"`
	PropertyNames []string `json:"propertyNames,omitempty"`
}

// VisitorConfig says how the mapper reaches one property.
type VisitorConfig struct {
	ProtocolName string           `json:"protocolName,omitempty"`
	ConfigData   *CustomizedValue `json:"configData,omitempty"`
}

// PushMethod says where the mapper pushes collected data.
type PushMethod struct {
	HTTP     *PushMethodHTTP `json:"http,omitempty"`
	MQTT     *PushMethodMQTT `json:"mqtt,omitempty"`
	OTEL     *PushMethodOTEL `json:"otel,omitempty"`
	DBMethod *DBMethodConfig `json:"dbMethod,omitempty"`
}

// PushMethodHTTP pushes to an HTTP endpoint.
type PushMethodHTTP struct {
	HostName    string `json:"hostName,omitempty"`
	Port        int64  `json:"port,omitempty"`
	RequestPath string `json:"requestPath,omitempty"`
	Timeout     int64  `json:"timeout,omitempty"`
}

// PushMethodMQTT publishes to an MQTT broker.
type PushMethodMQTT struct {
	Address  string `json:"address,omitempty"`
	Topic    string `json:"topic,omitempty"`
	QoS      int32  `json:"qos,omitempty"`
	Retained bool   `json:"retained,omitempty"`
}

// PushMethodOTEL exports to an OpenTelemetry endpoint.
type PushMethodOTEL struct {
	EndpointURL string `json:"endpointURL,omitempty"`
}

// DBMethodConfig writes to a database. Only the field names are defined
// here; the mapper interprets them.
type DBMethodConfig struct {
	Influxdb2 *DBMethodInfluxdb2 `json:"influxdb2,omitempty"`
	Redis     *DBMethodRedis     `json:"redis,omitempty"`
	TDEngine  *DBMethodTDEngine  `json:"TDEngine,omitempty"`
	Mysql     *DBMethodMySQL     `json:"mysql,omitempty"`
}

// DBMethodInfluxdb2 is InfluxDB v2.
type DBMethodInfluxdb2 struct {
	Influxdb2ClientConfig *Influxdb2ClientConfig `json:"influxdb2ClientConfig,omitempty"`
	Influxdb2DataConfig   *Influxdb2DataConfig   `json:"influxdb2DataConfig,omitempty"`
}

// Influxdb2ClientConfig says where the database is.
type Influxdb2ClientConfig struct {
	URL    string `json:"url,omitempty"`
	Org    string `json:"org,omitempty"`
	Bucket string `json:"bucket,omitempty"`
}

// Influxdb2DataConfig says how values are written.
type Influxdb2DataConfig struct {
	Measurement string            `json:"measurement,omitempty"`
	Tag         map[string]string `json:"tag,omitempty"`
	FieldKey    string            `json:"fieldKey,omitempty"`
}

// DBMethodRedis is Redis.
type DBMethodRedis struct {
	RedisClientConfig *RedisClientConfig `json:"redisClientConfig,omitempty"`
}

// RedisClientConfig says where Redis is.
type RedisClientConfig struct {
	Addr         string `json:"addr,omitempty"`
	DB           int    `json:"db,omitempty"`
	Poolsize     int    `json:"poolsize,omitempty"`
	MinIdleConns int    `json:"minIdleConns,omitempty"`
}

// DBMethodTDEngine is TDengine.
type DBMethodTDEngine struct {
	TDEngineClientConfig *TDEngineClientConfig `json:"TDEngineClientConfig,omitempty"`
}

// TDEngineClientConfig says where TDengine is.
type TDEngineClientConfig struct {
	Addr   string `json:"addr,omitempty"`
	DBName string `json:"dbName,omitempty"`
}

// DBMethodMySQL is MySQL.
type DBMethodMySQL struct {
	MySQLClientConfig *MySQLClientConfig `json:"mysqlClientConfig,omitempty"`
}

// MySQLClientConfig says where MySQL is.
type MySQLClientConfig struct {
	Addr     string `json:"addr,omitempty"`
	Database string `json:"database,omitempty"`
	UserName string `json:"userName,omitempty"`
}

// Device is one device attached to an edge node.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type Device struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   DeviceSpec   `json:"spec,omitempty"`
	Status DeviceStatus `json:"status,omitempty"`
}

// DeviceList is a list of Device.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type DeviceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Device `json:"items"`
}

// ModelName is the name of the device's model, "" when unset.
func (d *Device) ModelName() string {
	if d.Spec.DeviceModelRef == nil {
		return ""
	}
	return d.Spec.DeviceModelRef.Name
}

// Property returns the device property called name.
func (d *Device) Property(name string) (DeviceProperty, bool) {
	for _, p := range d.Spec.Properties {
		if p.Name == name {
			return p, true
		}
	}
	return DeviceProperty{}, false
}
