package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Sentinel errors. Compare with errors.Is; the returned errors wrap them with
// the key or change that failed.
var (
	// ErrNotFound: Get found no object under the key.
	ErrNotFound = errors.New("store: not found")
	// ErrInvalid: a key or change was rejected before touching the database
	// (empty Type or Name, a string that is not UTF-8 or holds a NUL byte, an
	// unknown Op). Nothing of the batch was applied.
	ErrInvalid = errors.New("store: invalid input")
	// ErrClosed: the store was used after Close.
	ErrClosed = errors.New("store: closed")
	// ErrSchemaTooNew: the database was written by a newer binary; opening it
	// would risk silently misreading data, so it is refused.
	ErrSchemaTooNew = errors.New("store: database schema is newer than this binary")
	// ErrCorrupt: the file is not a SQLite database or is damaged.
	ErrCorrupt = errors.New("store: database file is corrupt or not a database")
	// ErrFull: the disk (or the database's size limit) is full; the batch was
	// rolled back and must not be acknowledged.
	ErrFull = errors.New("store: database or disk is full")
)

// Object is one stored object: a serialized Kubernetes (or device) object
// and the resourceVersion the cloud sent with it. Type, Namespace and Name
// form the key; Namespace is "" for cluster-scoped objects.
//
// Type, Namespace, Name and ResourceVersion must be valid UTF-8 without NUL
// bytes; Value may hold any bytes. An empty Value is read back as nil.
type Object struct {
	Type, Namespace, Name, ResourceVersion string
	Value                                  []byte
}

// Op is what a Change does.
type Op int

const (
	// OpPut inserts the object or replaces the one stored under its key.
	OpPut Op = iota
	// OpDelete removes the object under the key; deleting a missing key is
	// not an error, so that redelivered deletes are idempotent.
	OpDelete
)

func (o Op) String() string {
	switch o {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	default:
		return "Op(" + strconv.Itoa(int(o)) + ")"
	}
}

// Change is one element of a batch. For OpDelete only Object.Type,
// Object.Namespace and Object.Name are used.
type Change struct {
	Op     Op
	Object Object
}

// Store is the edge metadata store. Implementations are safe for concurrent
// use; reads never see part of a batch.
type Store interface {
	// Apply applies changes in order in one transaction: all or nothing.
	// When it returns nil the batch is durable, so the caller may then
	// acknowledge every message in it (group commit). A later change to the
	// same key wins. An invalid change fails the whole batch with ErrInvalid
	// before anything is written.
	Apply(ctx context.Context, changes []Change) error
	// Get returns the object under the key, or an error wrapping ErrNotFound
	// that names the key.
	Get(ctx context.Context, typ, namespace, name string) (Object, error)
	// List returns the objects of a type in namespace, or in all namespaces
	// when namespace is "", ordered by namespace and then name (byte order).
	List(ctx context.Context, typ, namespace string) ([]Object, error)
	// Count returns the number of stored objects of all types.
	Count(ctx context.Context) (int, error)
	// Close releases the store; later calls fail with ErrClosed. Calling
	// Close again returns nil.
	Close() error
}

// keyString renders a key for error messages; quoted because keys may hold
// any UTF-8 text.
func keyString(typ, namespace, name string) string {
	return fmt.Sprintf("type %q namespace %q name %q", typ, namespace, name)
}

// checkText reports why s cannot be stored as a TEXT key column, or "".
// NUL bytes are refused because SQLite leaves the behaviour of text with
// embedded NULs undefined; invalid UTF-8 because SQLite would store it
// unchecked and ordering and round-tripping would no longer be defined.
func checkText(field, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s %q is not valid UTF-8", field, s)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%s %q contains a NUL byte", field, s)
	}
	return nil
}

// validateKey checks a full key (Get, Put, Delete).
func validateKey(typ, namespace, name string) error {
	if typ == "" {
		return errors.New("empty Type")
	}
	if name == "" {
		return errors.New("empty Name")
	}
	for _, f := range [...]struct{ field, s string }{{"Type", typ}, {"Namespace", namespace}, {"Name", name}} {
		if err := checkText(f.field, f.s); err != nil {
			return err
		}
	}
	return nil
}

// validateList checks List's arguments.
func validateList(typ, namespace string) error {
	if typ == "" {
		return fmt.Errorf("%w: list: empty Type", ErrInvalid)
	}
	if err := checkText("Type", typ); err != nil {
		return fmt.Errorf("%w: list: %w", ErrInvalid, err)
	}
	if err := checkText("Namespace", namespace); err != nil {
		return fmt.Errorf("%w: list: %w", ErrInvalid, err)
	}
	return nil
}

// validateGet checks Get's arguments.
func validateGet(typ, namespace, name string) error {
	if err := validateKey(typ, namespace, name); err != nil {
		return fmt.Errorf("%w: get %s: %w", ErrInvalid, keyString(typ, namespace, name), err)
	}
	return nil
}

// validateChanges checks a whole batch up front so that an invalid change
// never leaves a transaction half-applied.
func validateChanges(changes []Change) error {
	for i, c := range changes {
		o := c.Object
		var err error
		switch c.Op {
		case OpPut:
			err = validateKey(o.Type, o.Namespace, o.Name)
			if err == nil {
				err = checkText("ResourceVersion", o.ResourceVersion)
			}
		case OpDelete:
			err = validateKey(o.Type, o.Namespace, o.Name)
		default:
			err = fmt.Errorf("unknown Op %d", int(c.Op))
		}
		if err != nil {
			return fmt.Errorf("%w: change %d (%s %s): %w", ErrInvalid, i, c.Op, keyString(o.Type, o.Namespace, o.Name), err)
		}
	}
	return nil
}

func notFound(typ, namespace, name string) error {
	return fmt.Errorf("%w: %s", ErrNotFound, keyString(typ, namespace, name))
}
