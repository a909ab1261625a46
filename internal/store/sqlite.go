package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// busyTimeoutMillis bounds how long a connection waits for a lock held by
// another process (an operator's sqlite3 shell, a second edgecore by
// mistake) before failing with SQLITE_BUSY.
const busyTimeoutMillis = 5000

// maxReaders caps the read pool. Edge hosts are small; a handful of
// connections (each with its own page cache) is plenty for edged, the
// MetaServer and the twin reading at once.
const maxReaders = 4

// SQLite is the Store on a SQLite file.
//
// It holds two pools on the same file. writer has exactly one connection, so
// every Apply runs on it in turn: SQLite allows one writer at a time anyway,
// and queueing in database/sql is cheaper and fairer than retrying on
// SQLITE_BUSY; with _txlock=immediate the write lock is taken at BEGIN, so a
// transaction never fails half-way for lock reasons. reader has up to
// maxReaders query_only connections; in WAL mode they read the last committed
// snapshot without waiting for the writer, and the writer never waits for
// them.
type SQLite struct {
	path   string
	writer *sql.DB // one connection; only Apply and migrations write
	reader *sql.DB // query_only connections for Get, List and Count

	// Prepared once; database/sql re-prepares them per connection as needed.
	put, del                     *sql.Stmt // on writer
	get, listAll, listNS, counts *sql.Stmt // on reader

	closed atomic.Bool // set by the first Close
}

var _ Store = (*SQLite)(nil)

// Open opens (creating it and its directory if needed) the store at path and
// migrates it to the current schema. The database is refused with
// ErrSchemaTooNew if a newer binary wrote it, and with ErrCorrupt if the file
// is not a database.
//
// New files are created with mode 0600 in a 0700 directory: the store holds
// the node's secrets.
func Open(ctx context.Context, path string) (*SQLite, error) {
	ms, err := embeddedMigrations()
	if err != nil {
		return nil, err
	}
	return openWith(ctx, path, ms)
}

// openWith is Open with the migrations to apply; tests use it to build
// databases at older schema versions.
func openWith(ctx context.Context, path string, ms []migration) (_ *SQLite, err error) {
	if path == "" {
		return nil, fmt.Errorf("%w: open: empty database path", ErrInvalid)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	dir := filepath.Dir(abs)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: open %s: create directory: %w", abs, err)
	}
	// Create the file ourselves so that it gets 0600 (SQLite would use 0644);
	// SQLite gives the -wal and -shm files the mode of the database file.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", abs, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", abs, err)
	}

	s := &SQLite{path: abs}
	defer func() {
		if err != nil {
			s.closeAll() // the open error is the one to report
		}
	}()

	// journal_mode=WAL lets readers run beside the writer; synchronous=FULL
	// fsyncs the WAL at every commit, so what Apply acknowledged survives
	// power loss, not only a process kill.
	s.writer, err = sql.Open("sqlite", dsn(abs, url.Values{
		"_busy_timeout": {fmt.Sprint(busyTimeoutMillis)},
		"_foreign_keys": {"on"},
		"_journal_mode": {"WAL"},
		"_synchronous":  {"FULL"},
		"_txlock":       {"immediate"},
	}))
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", abs, err)
	}
	s.writer.SetMaxOpenConns(1)
	s.writer.SetMaxIdleConns(1)
	s.writer.SetConnMaxLifetime(0)
	s.writer.SetConnMaxIdleTime(0)
	if err := s.writer.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", abs, mapErr(err))
	}
	var mode string
	if err := s.writer.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", abs, mapErr(err))
	}
	if mode != "wal" {
		return nil, fmt.Errorf("store: open %s: journal_mode is %q, not \"wal\" (does the file system support shared memory and locking?)", abs, mode)
	}
	if err := migrate(ctx, s.writer, ms); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", abs, err)
	}
	// The database file may have just been created: make its directory entry
	// durable too. SQLite syncs the directory for the -wal file itself.
	if err := syncDir(dir); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", abs, err)
	}

	// Readers are opened after the writer has switched the file to WAL, so
	// they never need a write lock of their own.
	s.reader, err = sql.Open("sqlite", dsn(abs, url.Values{
		"_busy_timeout": {fmt.Sprint(busyTimeoutMillis)},
		"_foreign_keys": {"on"},
		"_synchronous":  {"FULL"}, // a reader may checkpoint when it closes last
		"_query_only":   {"on"},
	}))
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", abs, err)
	}
	s.reader.SetMaxOpenConns(maxReaders)
	s.reader.SetMaxIdleConns(maxReaders)
	if err := s.reader.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("store: open %s: readers: %w", abs, mapErr(err))
	}

	for _, p := range []struct {
		db   *sql.DB
		dst  **sql.Stmt
		text string
	}{
		{s.writer, &s.put, `INSERT INTO meta (type, namespace, name, resource_version, value) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (type, namespace, name) DO UPDATE SET resource_version = excluded.resource_version, value = excluded.value`},
		{s.writer, &s.del, `DELETE FROM meta WHERE type = ? AND namespace = ? AND name = ?`},
		{s.reader, &s.get, `SELECT resource_version, value FROM meta WHERE type = ? AND namespace = ? AND name = ?`},
		{s.reader, &s.listAll, `SELECT namespace, name, resource_version, value FROM meta WHERE type = ? ORDER BY namespace, name`},
		{s.reader, &s.listNS, `SELECT namespace, name, resource_version, value FROM meta WHERE type = ? AND namespace = ? ORDER BY name`},
		{s.reader, &s.counts, `SELECT COUNT(*) FROM meta`},
	} {
		if *p.dst, err = p.db.PrepareContext(ctx, p.text); err != nil {
			return nil, fmt.Errorf("store: open %s: prepare: %w", abs, mapErr(err))
		}
	}
	return s, nil
}

// dsn builds a file: URI so that any path (with '?', '#' or '%') is taken
// literally; the driver reads the underscore parameters, SQLite ignores them.
func dsn(path string, q url.Values) string {
	u := url.URL{Path: path}
	return "file:" + u.EscapedPath() + "?" + q.Encode()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	defer d.Close() // read-only handle
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// Path returns the absolute path of the database file.
func (s *SQLite) Path() string { return s.path }

// Apply implements Store. All changes run in one IMMEDIATE transaction on the
// single writer connection; the commit fsyncs the WAL before Apply returns.
func (s *SQLite) Apply(ctx context.Context, changes []Change) (err error) {
	if s.closed.Load() {
		return fmt.Errorf("store: apply: %w", ErrClosed)
	}
	if err := validateChanges(changes); err != nil {
		return err
	}
	if len(changes) == 0 {
		return nil
	}
	defer func() {
		if err != nil && s.closed.Load() {
			err = fmt.Errorf("store: apply: %w", ErrClosed)
		}
	}()
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: apply: begin: %w", mapErr(err))
	}
	defer tx.Rollback() // no-op after Commit; the first error is the one reported
	put, del := tx.StmtContext(ctx, s.put), tx.StmtContext(ctx, s.del)
	for i, c := range changes {
		o := c.Object
		switch c.Op {
		case OpPut:
			v := o.Value
			if v == nil {
				v = []byte{} // the driver binds a nil slice as NULL
			}
			_, err = put.ExecContext(ctx, o.Type, o.Namespace, o.Name, o.ResourceVersion, v)
		case OpDelete:
			_, err = del.ExecContext(ctx, o.Type, o.Namespace, o.Name)
		}
		if err != nil {
			return fmt.Errorf("store: apply: change %d (%s %s): %w", i, c.Op, keyString(o.Type, o.Namespace, o.Name), mapErr(err))
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: apply: commit: %w", mapErr(err))
	}
	return nil
}

// Get implements Store.
func (s *SQLite) Get(ctx context.Context, typ, namespace, name string) (Object, error) {
	if s.closed.Load() {
		return Object{}, fmt.Errorf("store: get: %w", ErrClosed)
	}
	if err := validateGet(typ, namespace, name); err != nil {
		return Object{}, err
	}
	o := Object{Type: typ, Namespace: namespace, Name: name}
	err := s.get.QueryRowContext(ctx, typ, namespace, name).Scan(&o.ResourceVersion, &o.Value)
	if errors.Is(err, sql.ErrNoRows) {
		return Object{}, notFound(typ, namespace, name)
	}
	if err != nil {
		return Object{}, s.readErr("get "+keyString(typ, namespace, name), err)
	}
	if len(o.Value) == 0 {
		o.Value = nil
	}
	return o, nil
}

// List implements Store.
func (s *SQLite) List(ctx context.Context, typ, namespace string) (_ []Object, err error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("store: list: %w", ErrClosed)
	}
	if err := validateList(typ, namespace); err != nil {
		return nil, err
	}
	op := fmt.Sprintf("list type %q namespace %q", typ, namespace)
	var rows *sql.Rows
	if namespace == "" {
		rows, err = s.listAll.QueryContext(ctx, typ)
	} else {
		rows, err = s.listNS.QueryContext(ctx, typ, namespace)
	}
	if err != nil {
		return nil, s.readErr(op, err)
	}
	defer rows.Close() // rows.Err below reports iteration errors
	var out []Object
	for rows.Next() {
		o := Object{Type: typ}
		if err := rows.Scan(&o.Namespace, &o.Name, &o.ResourceVersion, &o.Value); err != nil {
			return nil, s.readErr(op, err)
		}
		if len(o.Value) == 0 {
			o.Value = nil
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr(op, err)
	}
	return out, nil
}

// Count implements Store.
func (s *SQLite) Count(ctx context.Context) (int, error) {
	if s.closed.Load() {
		return 0, fmt.Errorf("store: count: %w", ErrClosed)
	}
	var n int
	if err := s.counts.QueryRowContext(ctx).Scan(&n); err != nil {
		return 0, s.readErr("count", err)
	}
	return n, nil
}

// Close implements Store. Readers are closed first so that the writer is the
// last connection: it checkpoints the WAL into the database file and removes
// it, leaving a single self-contained file.
func (s *SQLite) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if err := s.closeAll(); err != nil {
		return fmt.Errorf("store: close %s: %w", s.path, err)
	}
	return nil
}

func (s *SQLite) closeAll() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.get, s.listAll, s.listNS, s.counts, s.put, s.del} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	for _, db := range []*sql.DB{s.reader, s.writer} {
		if db != nil {
			errs = append(errs, db.Close())
		}
	}
	return errors.Join(errs...)
}

// readErr wraps a read failure, reporting ErrClosed if Close raced with it.
func (s *SQLite) readErr(op string, err error) error {
	if s.closed.Load() {
		return fmt.Errorf("store: %s: %w", op, ErrClosed)
	}
	return fmt.Errorf("store: %s: %w", op, mapErr(err))
}

// mapErr maps SQLite result codes callers can act on to sentinel errors,
// keeping the driver error in the chain for its message.
func mapErr(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	var sentinel error
	switch se.Code() & 0xff { // primary result code
	case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
		sentinel = ErrCorrupt
	case sqlite3.SQLITE_FULL:
		sentinel = ErrFull
	case sqlite3.SQLITE_CONSTRAINT:
		sentinel = ErrInvalid // validation should have caught it first
	default:
		return err
	}
	return fmt.Errorf("%w: %w", sentinel, err)
}
