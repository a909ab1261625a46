package cri

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors; compare with errors.Is.
var (
	// ErrNotFound: the runtime has no such sandbox, container or image.
	ErrNotFound = errors.New("cri: not found")
	// ErrUnavailable: the runtime could not be reached (socket missing,
	// runtime restarting).
	ErrUnavailable = errors.New("cri: runtime unavailable")
	// ErrTimeout: the call did not finish within its deadline.
	ErrTimeout = errors.New("cri: timed out")
)

// Error is a failed CRI call: the operation, the object it was about and the
// runtime's error (a gRPC status). It also matches the sentinel for its
// status code.
type Error struct {
	Op   string     // e.g. "CreateContainer"
	ID   string     // sandbox, container or image the call was about; may be empty
	Code codes.Code // gRPC code of Err
	Err  error
}

func (e *Error) Error() string {
	if e.ID == "" {
		return fmt.Sprintf("cri: %s: %s", e.Op, status.Convert(e.Err).Message())
	}
	return fmt.Sprintf("cri: %s %s: %s", e.Op, e.ID, status.Convert(e.Err).Message())
}

// Unwrap returns the runtime's error and the sentinel matching the code.
func (e *Error) Unwrap() []error {
	errs := []error{e.Err}
	switch e.Code {
	case codes.NotFound:
		errs = append(errs, ErrNotFound)
	case codes.Unavailable:
		errs = append(errs, ErrUnavailable)
	case codes.DeadlineExceeded:
		errs = append(errs, ErrTimeout)
	}
	return errs
}

// wrap turns a gRPC error into an *Error; nil stays nil.
func wrap(op, id string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Op: op, ID: id, Code: status.Code(err), Err: err}
}
