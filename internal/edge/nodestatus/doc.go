// Package nodestatus describes the edge host as a Kubernetes Node: labels,
// capacity, addresses, system info and conditions, read from /proc, /etc,
// statfs and the network interfaces.
//
// It builds plain k8s.io/api objects and never talks to an apiserver; the
// result travels to the cloud in a node or nodestatus message. edgecore must
// not link client-go, so this package imports only k8s.io/api and
// k8s.io/apimachinery (a test enforces it).
package nodestatus
