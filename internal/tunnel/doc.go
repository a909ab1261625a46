// Package tunnel is the byte-level protocol of stream tunnels, shared by
// CloudStream and EdgeStream: the one-line hello an edge sends on a tunnel
// connection and the cloud's one-line reply, the HTTP CONNECT request the
// kube-apiserver's egress selector (and any HTTPS_PROXY client) sends to the
// proxy port, and Splice, which joins two connections.
//
// Everything here reads at most a bounded number of bytes before deciding,
// never reads past the end of what it parses, and has a fuzz target.
package tunnel
