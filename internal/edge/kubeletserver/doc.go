// Package kubeletserver is the edge's kubelet API: the paths the
// kube-apiserver and metrics-server call on a node's kubelet —
// /containerLogs, /exec, /attach, /portForward, /stats/summary,
// /metrics/resource, /healthz and /pods — implemented on CRI alone, so that
// it works next to edged without knowing its internals: containers are found
// by the kubelet's standard CRI labels (io.kubernetes.pod.namespace, .name,
// .uid, io.kubernetes.container.name), logs are read from the CRI LogPath,
// and exec, attach and port-forward are proxied to the runtime's streaming
// server.
//
// The server listens on no socket. It serves the connections ServeConn hands
// it: stream tunnels that EdgeStream opened to CloudStream, each carrying one
// TLS session of the apiserver. It presents the node certificate and, by
// default, requires a client certificate of the KubeEdge CA in
// pki.StreamClientsGroup (the apiserver's --kubelet-client-certificate).
package kubeletserver
