// Package cri is edged's thin, typed client for a CRI runtime (containerd's
// CRI plugin) over a unix socket: the runtime service (sandboxes,
// containers, exec, stats) and the image service (list, status, pull,
// remove, filesystem usage).
//
// Every call has a deadline (Options.Timeout, or Options.PullTimeout for
// pulls) below the caller's context and returns errors that name the
// operation and the object and wrap the gRPC status; errors.Is(err,
// ErrNotFound) tells a missing sandbox, container or image apart, and
// errors.Is(err, ErrUnavailable) a runtime that cannot be reached.
//
// Runtime is the interface edged consumes; *Client implements it over gRPC.
// The package links neither k8s.io/kubernetes nor client-go.
package cri
