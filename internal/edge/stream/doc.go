// Package stream is EdgeStream: when CloudStream asks (a stream message over
// the CloudHub session), it dials a fresh TLS connection to the cloud's
// tunnel port with the node certificate, presents the stream id and, once
// the cloud accepts, hands the connection to the edge's kubelet API server,
// which then serves the kube-apiserver's TLS session arriving through it.
//
// Nothing listens on the network at the edge: every stream is a connection
// the edge opened itself, so it works behind NAT and firewalls that allow
// the edge to reach the cloud.
package stream
