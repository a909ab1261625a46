// Package certs is edgecore's certificate manager: it joins the cloud with a
// token to obtain a node client certificate, keeps it on disk at KubeEdge's
// paths, and rotates it over mTLS before it expires. Other components take
// their TLS configuration from the Manager, so a rotated certificate is used
// for new connections without restarting anything.
//
// The package deliberately has no Kubernetes dependencies.
package certs
