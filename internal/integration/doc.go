// Package integration tests cloudcore and edgecore together, in one
// process, against a real kube-apiserver (built by hack/build-k8s.sh) over
// real TLS sockets with real SQLite stores. The end-to-end tests of the
// built binaries live in test/e2e.
package integration
