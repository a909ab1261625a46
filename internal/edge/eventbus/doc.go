// Package eventbus is edgecore's MQTT side: device apps publish to
// $hw/events/... topics and get their results back over MQTT.
//
// Three modes, as in KubeEdge (mqttMode): 0 internal (an embedded mochi-mqtt
// broker, default 127.0.0.1:1884), 2 external (a paho client of an existing
// broker such as Mosquitto, default tcp://127.0.0.1:1883, reconnecting and
// resubscribing by itself), 1 both. Incoming messages are routed by topic
// (route.go) to DeviceTwin on a few workers, sharded by topic so that one
// device's requests stay in order while a slow one does not hold up others;
// results and events are published on every broker in use.
package eventbus
