package store

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestOpenCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "lib", "kubeedge")
	path := filepath.Join(dir, "edgecore.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Path() != path {
		t.Errorf("Path() = %q, want %q", s.Path(), path)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		// The umask can only remove bits.
		if fi.Mode()&^want != 0 {
			t.Errorf("%s has mode %v, want at most %v (the store holds secrets)", p, fi.Mode(), want)
		}
	}
}

func TestOpenEmptyPath(t *testing.T) {
	_, err := Open(context.Background(), "")
	checkErr(t, "Open", err, ErrInvalid, "empty database path")
}

// TestOpenPathIsLiteral: characters that mean something in a URI are part
// of the file name, not query parameters.
func TestOpenPathIsLiteral(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a dir?x=1#frag", "m%20eta?.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(context.Background(), []Change{put("pod", "d", "p", "1", "v")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at the literal path: %v", err)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{"m%20eta?.db"}, names); diff != "" {
		t.Errorf("files after Close (-want +got):\n%s", diff)
	}
}

func TestPragmas(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	for _, tc := range []struct {
		pool *sql.DB
		name string
		want map[string]string
	}{
		{s.writer, "writer", map[string]string{"journal_mode": "wal", "synchronous": "2", "foreign_keys": "1", "busy_timeout": "5000", "query_only": "0"}},
		{s.reader, "reader", map[string]string{"journal_mode": "wal", "synchronous": "2", "foreign_keys": "1", "busy_timeout": "5000", "query_only": "1"}},
	} {
		got := map[string]string{}
		for p := range tc.want {
			var v string
			if err := tc.pool.QueryRowContext(ctx, "PRAGMA "+p).Scan(&v); err != nil {
				t.Fatalf("%s: PRAGMA %s: %v", tc.name, p, err)
			}
			got[p] = v
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s pragmas (-want +got):\n%s", tc.name, diff)
		}
	}
	if _, err := s.reader.ExecContext(ctx, "DELETE FROM meta"); err == nil {
		t.Error("a reader connection accepted a write")
	}
}

// TestReopen: what Apply acknowledged is there after Close and Open.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "meta.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	want := []Object{
		obj("pod", "default", "a", "10", "pod a"),
		obj("pod", "kube-system", "b", "11", "pod b"),
	}
	if err := s.Apply(ctx, []Change{{Op: OpPut, Object: want[0]}, {Op: OpPut, Object: want[1]}, put("secret", "default", "s", "1", "x")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, []Change{del("secret", "default", "s")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "-wal"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("WAL file left after Close (stat: %v); the last connection should checkpoint and remove it", err)
	}

	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.List(ctx, "pod", "")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after reopen (-want +got):\n%s", diff)
	}
	if n, err := s.Count(ctx); err != nil || n != 2 {
		t.Errorf("Count = %d, %v; want 2", n, err)
	}
}

const crashHelperEnv = "STORE_TEST_CRASH_HELPER_DB"

// TestCrashHelper is the child process of TestKillAfterAck.
func TestCrashHelper(t *testing.T) {
	path := os.Getenv(crashHelperEnv)
	if path == "" {
		t.Skip("helper process for TestKillAfterAck")
	}
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	// Bounded so that an orphaned helper cannot fill the disk.
	for i := range 2000 {
		if err := s.Apply(ctx, crashBatch(i)); err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
		fmt.Printf("acked %d\n", i)
	}
	io.Copy(io.Discard, os.Stdin) // wait to be killed, or for the parent to go away
	os.Exit(0)
}

func crashBatch(i int) []Change {
	var b []Change
	for j := range 10 {
		b = append(b, put("pod", "ns", fmt.Sprintf("b%05d-%d", i, j), strconv.Itoa(i), strings.Repeat("v", 500)))
	}
	return b
}

// TestKillAfterAck kills a writing process with SIGKILL (no Close, no
// checkpoint) and checks that every acknowledged batch, and no part of an
// unacknowledged one, is in the database. Power loss, which synchronous=FULL
// is for, cannot be simulated here.
func TestKillAfterAck(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	path := filepath.Join(t.TempDir(), "meta.db")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashHelper$")
	cmd.Env = append(os.Environ(), crashHelperEnv+"="+path)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lastAck := -1
	sc := bufio.NewScanner(stdout)
	for lastAck < 30 && sc.Scan() {
		line := sc.Text()
		n, ok := strings.CutPrefix(line, "acked ")
		if !ok {
			t.Fatalf("helper: %s", line)
		}
		if lastAck, err = strconv.Atoi(n); err != nil {
			t.Fatalf("helper: %s", line)
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait() // "signal: killed"
	if lastAck < 30 {
		t.Fatalf("helper stopped after batch %d: %v", lastAck, sc.Err())
	}

	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	objs, err := s.List(context.Background(), "pod", "ns")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs)%10 != 0 || len(objs)/10 <= lastAck {
		t.Fatalf("%d objects after kill: want whole batches, at least %d of them", len(objs), lastAck+1)
	}
	for k, o := range objs {
		i, j := k/10, k%10
		if want := fmt.Sprintf("b%05d-%d", i, j); o.Name != want || o.ResourceVersion != strconv.Itoa(i) {
			t.Fatalf("object %d is %s rv %s, want %s rv %d", k, o.Name, o.ResourceVersion, want, i)
		}
	}
	t.Logf("acked %d batches, found %d", lastAck+1, len(objs)/10)
}

// rawDB opens path without migrating, as the writer does.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", dsn(path, url.Values{"_journal_mode": {"WAL"}, "_txlock": {"immediate"}}))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	return db
}

// TestUpgradeFromEveryVersion builds a database at each older schema version
// (a prefix of the migrations, with data where the schema has the meta
// table) and checks that Open brings it to the current version and keeps the
// data.
func TestUpgradeFromEveryVersion(t *testing.T) {
	ms, err := embeddedMigrations()
	if err != nil {
		t.Fatal(err)
	}
	for k := range ms {
		t.Run(fmt.Sprintf("from_%d", k), func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "meta.db")
			db := rawDB(t, path)
			if err := migrate(ctx, db, ms[:k]); err != nil {
				t.Fatal(err)
			}
			var want []Object
			if k >= 1 {
				// Written with the version-1 schema, as a v1 binary would.
				if _, err := db.ExecContext(ctx, `INSERT INTO meta (type, namespace, name, resource_version, value) VALUES ('pod', 'default', 'old', '42', x'7b7d')`); err != nil {
					t.Fatal(err)
				}
				want = []Object{{Type: "pod", Namespace: "default", Name: "old", ResourceVersion: "42", Value: []byte("{}")}}
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}

			s, err := Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if v, err := schemaVersion(ctx, s.reader); err != nil || v != len(ms) {
				t.Errorf("schema version %d, %v; want %d", v, err, len(ms))
			}
			got, err := s.List(ctx, "pod", "")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("data after upgrade (-want +got):\n%s", diff)
			}
			if err := s.Apply(ctx, []Change{put("pod", "default", "new", "1", "v")}); err != nil {
				t.Errorf("Apply after upgrade: %v", err)
			}
		})
	}
}

// withTestMigration returns the embedded migrations plus one more, as a
// future release would add it.
func withTestMigration(t *testing.T, name, text string) []migration {
	t.Helper()
	fsys := fstest.MapFS{name: {Data: []byte(text)}}
	ms, err := embeddedMigrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		fsys[m.name] = &fstest.MapFile{Data: []byte(m.sql)}
	}
	all, err := loadMigrations(fsys)
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// TestUpgradeAndDowngrade: a database written by this binary is migrated by
// a newer one (data kept, version recorded), and this binary then refuses
// the newer database without touching it.
func TestUpgradeAndDowngrade(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "meta.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, []Change{put("pod", "default", "keep", "5", "v")}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	cur, err := embeddedMigrations()
	if err != nil {
		t.Fatal(err)
	}
	next := len(cur) + 1
	name := fmt.Sprintf("%04d_note.sql", next)
	newer := withTestMigration(t, name, "ALTER TABLE meta ADD COLUMN note TEXT NOT NULL DEFAULT 'n';\nCREATE TABLE extra (k TEXT PRIMARY KEY) STRICT;\n")
	s, err = openWith(ctx, path, newer)
	if err != nil {
		t.Fatalf("open with %s: %v", name, err)
	}
	var note string
	if err := s.reader.QueryRowContext(ctx, `SELECT note FROM meta WHERE name = 'keep'`).Scan(&note); err != nil || note != "n" {
		t.Errorf("migrated column: %q, %v", note, err)
	}
	if v, err := schemaVersion(ctx, s.reader); err != nil || v != next {
		t.Errorf("schema version %d, %v; want %d", v, err, next)
	}
	var appliedAt string
	if err := s.reader.QueryRowContext(ctx, `SELECT applied_at FROM schema_migrations WHERE version = ?`, next).Scan(&appliedAt); err != nil {
		t.Fatal(err)
	}
	if _, err := time.Parse(time.RFC3339Nano, appliedAt); err != nil {
		t.Errorf("applied_at %q is not RFC 3339: %v", appliedAt, err)
	}
	if got, err := s.Get(ctx, "pod", "default", "keep"); err != nil || got.ResourceVersion != "5" {
		t.Errorf("Get after upgrade: %+v, %v", got, err)
	}
	s.Close()

	_, err = Open(ctx, path)
	checkErr(t, "Open", err, ErrSchemaTooNew, fmt.Sprintf("the database is at schema version %d, this binary knows versions up to %d", next, len(cur)))
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the file", err)
	}
	t.Log(err)
	// Reopening with the newer migrations still works: nothing was changed.
	s, err = openWith(ctx, path, newer)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// TestFailedMigrationRollsBack: a migration that fails half-way leaves the
// database at the previous version with none of its statements applied.
func TestFailedMigrationRollsBack(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "meta.db")
	cur, err := embeddedMigrations()
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("%04d_broken.sql", len(cur)+1)
	_, err = openWith(ctx, path, withTestMigration(t, name, "CREATE TABLE half (a TEXT);\nINSERT INTO no_such_table VALUES (1);\n"))
	if err == nil || !strings.Contains(err.Error(), "migration "+name) || !strings.Contains(err.Error(), "no_such_table") {
		t.Fatalf("error %v, want one naming %s and the failing statement", err, name)
	}
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, err := schemaVersion(ctx, s.reader); err != nil || v != len(cur) {
		t.Errorf("schema version %d, %v; want %d", v, err, len(cur))
	}
	var n int
	if err := s.reader.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_schema WHERE name = 'half'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("table from the failed migration exists (%d, %v)", n, err)
	}
}

func TestLoadMigrationsChecksNames(t *testing.T) {
	ok := &fstest.MapFile{Data: []byte("SELECT 1;")}
	for _, tc := range []struct {
		name string
		fsys fstest.MapFS
		want string
	}{
		{"no number", fstest.MapFS{"0001_a.sql": ok, "meta.sql": ok}, `"meta.sql" is not named NNNN_description.sql`},
		{"short number", fstest.MapFS{"1_a.sql": ok}, `"1_a.sql" is not named`},
		{"zero", fstest.MapFS{"0000_a.sql": ok}, `"0000_a.sql" is not named`},
		{"gap", fstest.MapFS{"0001_a.sql": ok, "0003_c.sql": ok}, "migration 0003_c.sql: expected version 2"},
		{"duplicate", fstest.MapFS{"0001_a.sql": ok, "0001_b.sql": ok}, "expected version 2"},
		{"empty", fstest.MapFS{"README": ok}, "no migrations found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadMigrations(tc.fsys)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	ms, err := loadMigrations(fstest.MapFS{"0002_b.sql": ok, "0001_a.sql": ok, "notes.txt": ok})
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].name != "0001_a.sql" || ms[1].version != 2 {
		t.Errorf("loaded %+v", ms)
	}
}

func TestOpenNotADatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	if err := os.WriteFile(path, []byte(strings.Repeat("this is not a database ", 200)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), path)
	checkErr(t, "Open", err, ErrCorrupt, path)
	t.Log(err)
}

// TestDiskFull: a batch that does not fit is rolled back and reported as
// ErrFull, so the caller does not acknowledge it.
func TestDiskFull(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	if err := s.Apply(ctx, []Change{put("pod", "d", "before", "1", "v")}); err != nil {
		t.Fatal(err)
	}
	var pages int
	if err := s.writer.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	// The writer pool has one connection, so the limit applies to Apply.
	if _, err := s.writer.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", pages+2)); err != nil {
		t.Fatal(err)
	}
	var batch []Change
	for i := range 50 {
		batch = append(batch, put("pod", "d", fmt.Sprint("big-", i), "1", strings.Repeat("x", 4096)))
	}
	err := s.Apply(ctx, batch)
	checkErr(t, "Apply", err, ErrFull, "full")
	t.Log(err)
	if n, err := s.Count(ctx); err != nil || n != 1 {
		t.Errorf("Count = %d, %v; want 1 (the failed batch must leave nothing)", n, err)
	}
}

// TestReadsDuringWriteTransaction: readers are not blocked by an open write
// transaction and do not see its uncommitted changes.
func TestReadsDuringWriteTransaction(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	if err := s.Apply(ctx, []Change{put("pod", "d", "p", "1", "old")}); err != nil {
		t.Fatal(err)
	}
	tx, err := s.writer.BeginTx(ctx, nil) // IMMEDIATE: holds the write lock
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.StmtContext(ctx, s.put).ExecContext(ctx, "pod", "d", "p", "2", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.StmtContext(ctx, s.put).ExecContext(ctx, "pod", "d", "q", "1", []byte("q")); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	got, err := s.Get(rctx, "pod", "d", "p")
	if err != nil {
		t.Fatalf("Get during a write transaction: %v", err)
	}
	if diff := cmp.Diff(obj("pod", "d", "p", "1", "old"), got); diff != "" {
		t.Errorf("Get saw uncommitted data (-want +got):\n%s", diff)
	}
	if n, err := s.Count(rctx); err != nil || n != 1 {
		t.Errorf("Count during a write transaction = %d, %v; want 1", n, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, "pod", "d", "p"); err != nil || got.ResourceVersion != "2" {
		t.Errorf("after commit: %+v, %v", got, err)
	}
}

// TestConcurrentReadersWhileWriting: readers running beside a stream of
// batches each see whole batches (every object from the same batch) and
// never go back in time.
func TestConcurrentReadersWhileWriting(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	const batches, perBatch, readers = 100, 10, 4
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(done)
		for i := 1; i <= batches; i++ {
			var b []Change
			for j := range perBatch {
				b = append(b, put("pod", "ns", fmt.Sprint("o", j), strconv.Itoa(i), fmt.Sprint("value of batch ", i)))
			}
			if err := s.Apply(ctx, b); err != nil {
				t.Errorf("Apply batch %d: %v", i, err)
				return
			}
		}
	})
	for r := range readers {
		wg.Go(func() {
			last, reads := 0, 0
			for {
				select {
				case <-done:
					if reads == 0 {
						t.Errorf("reader %d never read", r)
					}
					return
				default:
				}
				objs, err := s.List(ctx, "pod", "ns")
				if err != nil {
					t.Errorf("reader %d: List: %v", r, err)
					return
				}
				reads++
				if len(objs) == 0 {
					if last != 0 {
						t.Errorf("reader %d: objects disappeared after batch %d", r, last)
						return
					}
					continue
				}
				if len(objs) != perBatch {
					t.Errorf("reader %d: saw %d objects, want %d", r, len(objs), perBatch)
					return
				}
				rv, _ := strconv.Atoi(objs[0].ResourceVersion)
				for _, o := range objs {
					if o.ResourceVersion != objs[0].ResourceVersion {
						t.Errorf("reader %d: saw a partial batch: %s has rv %s, %s has rv %s", r, objs[0].Name, objs[0].ResourceVersion, o.Name, o.ResourceVersion)
						return
					}
				}
				if rv < last {
					t.Errorf("reader %d: went back from batch %d to %d", r, last, rv)
					return
				}
				last = rv
				if _, err := s.Get(ctx, "pod", "ns", "o0"); err != nil {
					t.Errorf("reader %d: Get: %v", r, err)
					return
				}
			}
		})
	}
	wg.Wait()
	got, err := s.Get(ctx, "pod", "ns", "o9")
	if err != nil || got.ResourceVersion != strconv.Itoa(batches) {
		t.Errorf("final state: %+v, %v", got, err)
	}
}
