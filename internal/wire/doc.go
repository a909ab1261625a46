// Package wire is the cloud–edge message envelope: KubeEdge-compatible JSON
// messages, typed resource keys and the framing used on stream transports.
//
// A frame is decoded once, here, into a Message whose Resource is already a
// parsed, validated value; nothing past the hubs splits resource strings.
package wire
