package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// migrationFiles holds the schema history. Files are named NNNN_what.sql,
// numbered from 0001 without gaps; a released file is never edited, a change
// is a new file.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one numbered schema step.
type migration struct {
	version int
	name    string // file name, for error messages
	sql     string
}

// loadMigrations reads *.sql from the root of fsys and checks the numbering.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("store: read migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		if e.IsDir() || path.Ext(e.Name()) != ".sql" {
			continue
		}
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || len(num) != 4 {
			return nil, fmt.Errorf("store: migration file %q is not named NNNN_description.sql", e.Name())
		}
		b, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("store: read migration %s: %w", e.Name(), err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("store: migration %s: expected version %d (versions must run 1, 2, 3, ... without gaps or duplicates)", m.name, i+1)
		}
	}
	if len(ms) == 0 {
		return nil, errors.New("store: no migrations found")
	}
	return ms, nil
}

// embeddedMigrations returns the migrations compiled into the binary.
func embeddedMigrations() ([]migration, error) {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	return loadMigrations(sub)
}

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	applied_at TEXT NOT NULL
) STRICT`

// schemaVersion returns the highest applied migration, 0 for a new database.
func schemaVersion(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (int, error) {
	var v int
	if err := q.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("store: read schema version: %w", mapErr(err))
	}
	return v, nil
}

// migrate brings db up to the last of ms, one transaction per migration so
// that a failing step leaves the database at the previous version. db must
// begin IMMEDIATE transactions: the version is re-read inside each one, so
// two processes opening the same file at once apply each step once.
//
// A database whose version is above the last of ms was written by a newer
// binary and is refused with ErrSchemaTooNew, before anything is changed.
func migrate(ctx context.Context, db *sql.DB, ms []migration) error {
	if _, err := db.ExecContext(ctx, createMigrationsTable); err != nil {
		return fmt.Errorf("store: create schema_migrations: %w", mapErr(err))
	}
	latest := 0
	if len(ms) > 0 {
		latest = ms[len(ms)-1].version
	}
	cur, err := schemaVersion(ctx, db)
	if err != nil {
		return err
	}
	if cur > latest {
		return fmt.Errorf("%w: the database is at schema version %d, this binary knows versions up to %d; run a newer edgecore or restore a backup", ErrSchemaTooNew, cur, latest)
	}
	for _, m := range ms {
		if m.version <= cur {
			continue
		}
		if err := applyMigration(ctx, db, m); err != nil {
			return err
		}
	}
	return nil
}

func applyMigration(ctx context.Context, db *sql.DB, m migration) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: migration %s: begin: %w", m.name, mapErr(err))
	}
	defer tx.Rollback() // no-op after Commit; the first error is the one reported
	cur, err := schemaVersion(ctx, tx)
	if err != nil {
		return err
	}
	if cur >= m.version {
		return nil // another process applied it between our read and our lock
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return fmt.Errorf("store: migration %s: %w", m.name, mapErr(err))
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO schema_migrations (version, applied_at) VALUES (?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))`,
		m.version); err != nil {
		return fmt.Errorf("store: migration %s: record version: %w", m.name, mapErr(err))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: migration %s: commit: %w", m.name, mapErr(err))
	}
	return nil
}
