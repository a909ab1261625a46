// Package stream is CloudStream: it carries the kube-apiserver's connections
// to edge kubelets (kubectl logs, exec, attach, port-forward, metrics)
// through tunnels the edges open, without any iptables rule.
//
// The apiserver's egress selector ("cluster" egress, HTTPConnect over TLS)
// sends "CONNECT host:port" to the proxy port (default 10003). Server looks
// the target up among the nodes' reported addresses and kubelet ports
// (NodeIndex). For an edge node it asks that edge, over its CloudHub
// session, to dial back to the tunnel port (default 10004) with its node
// certificate and present a fresh stream id; it checks that the
// certificate's node is the one asked, answers the CONNECT with 200 and
// splices the two connections. The apiserver's TLS session with the edge's
// kubelet server passes through opaquely. Targets that are not edge kubelets
// (cloud kubelets, webhooks, aggregated APIs) are dialled directly when
// passthrough is on.
//
// Both ports require client certificates of the KubeEdge CA: node
// certificates on the tunnel port, stream client certificates
// (pki.StreamClientsGroup) on the proxy port.
package stream
