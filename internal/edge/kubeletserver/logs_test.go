package kubeletserver

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clocktesting "k8s.io/utils/clock/testing"
)

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

// criLine renders one CRI log line at t0+sec.
func criLine(sec int, stream, tag, content string) string {
	return t0.Add(time.Duration(sec)*time.Second).Format(time.RFC3339Nano) + " " + stream + " " + tag + " " + content + "\n"
}

func TestParseLogOptions(t *testing.T) {
	now := t0
	for _, tc := range []struct {
		q       string
		want    LogOptions
		wantErr string
	}{
		{q: "", want: LogOptions{TailLines: -1}},
		{q: "follow=true&previous=false&timestamps=1&tailLines=10&limitBytes=100", want: LogOptions{Follow: true, Timestamps: true, TailLines: 10, LimitBytes: 100}},
		{q: "sinceSeconds=60", want: LogOptions{TailLines: -1, Since: now.Add(-time.Minute)}},
		{q: "sinceTime=2026-03-01T09:00:00Z", want: LogOptions{TailLines: -1, Since: t0.Add(-time.Hour)}},
		{q: "stream=Stderr", want: LogOptions{TailLines: -1, Stream: "stderr"}},
		{q: "tailLines=0", want: LogOptions{TailLines: 0}},
		{q: "follow=yes", wantErr: `follow "yes" is not a boolean`},
		{q: "tailLines=-1", wantErr: "tailLines"},
		{q: "limitBytes=0", wantErr: "limitBytes"},
		{q: "sinceSeconds=1&sinceTime=2026-03-01T09:00:00Z", wantErr: "mutually exclusive"},
		{q: "sinceTime=yesterday", wantErr: "sinceTime"},
		{q: "stream=stdin", wantErr: "stream"},
	} {
		t.Run(tc.q, func(t *testing.T) {
			q, _ := url.ParseQuery(tc.q)
			got, err := ParseLogOptions(q, now)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
		})
	}
}

// naiveTail is the obvious tail: the offset of the first of the last n
// '\n'-terminated lines.
func naiveTail(data []byte, n int64) int64 {
	if n < 0 {
		return 0
	}
	var starts []int64 // start offsets of complete lines
	start := int64(0)
	for i, c := range data {
		if c == '\n' {
			starts = append(starts, start)
			start = int64(i) + 1
		}
	}
	if n == 0 {
		return start
	}
	if int64(len(starts)) <= n {
		return 0
	}
	return starts[int64(len(starts))-n]
}

func TestTailStart(t *testing.T) {
	for _, tc := range []struct {
		data string
		n    int64
		want int64
	}{
		{"a\nb\nc\n", 2, 2}, {"a\nb\nc\n", 0, 6}, {"a\nb\nc\n", 3, 0}, {"a\nb\nc\n", 9, 0},
		{"a\nb\nc", 1, 2}, {"a\nb\nc", 0, 4}, {"", 5, 0}, {"\n\n", 1, 1}, {"abc", 1, 0}, {"a\n", -1, 0},
	} {
		got, err := tailStart(bytes.NewReader([]byte(tc.data)), tc.n)
		if err != nil || got != tc.want || got != naiveTail([]byte(tc.data), tc.n) {
			t.Errorf("tailStart(%q, %d) = %d, %v; want %d (naive %d)", tc.data, tc.n, got, err, tc.want, naiveTail([]byte(tc.data), tc.n))
		}
	}
	// Across block boundaries.
	var big bytes.Buffer
	for i := range 20000 {
		fmt.Fprintf(&big, "line %d\n", i)
	}
	for _, n := range []int64{1, 7, 5000, 19999, 20000, 30000} {
		got, _ := tailStart(bytes.NewReader(big.Bytes()), n)
		if want := naiveTail(big.Bytes(), n); got != want {
			t.Errorf("tailStart(big, %d) = %d, want %d", n, got, want)
		}
	}
}

func FuzzTailStart(f *testing.F) {
	f.Add([]byte("a\nb\nc\n"), int64(2))
	f.Add([]byte("\n\n\nx"), int64(1))
	f.Add(bytes.Repeat([]byte("0123456789\n"), 4000), int64(3001))
	f.Fuzz(func(t *testing.T, data []byte, n int64) {
		got, err := tailStart(bytes.NewReader(data), n)
		if err != nil {
			t.Fatal(err)
		}
		if want := naiveTail(data, n); got != want {
			t.Fatalf("tailStart(%q, %d) = %d, want %d", data, n, got, want)
		}
	})
}

func TestLogWriter(t *testing.T) {
	recs := []string{
		criLine(0, "stdout", "F", "first"),
		criLine(1, "stderr", "P", "part-a "),
		criLine(2, "stderr", "F", "part-b"),
		criLine(3, "stdout", "F", "last"),
	}
	for _, tc := range []struct {
		name string
		opts LogOptions
		want string
	}{
		{"plain", LogOptions{}, "first\npart-a part-b\nlast\n"},
		{"timestamps once per line", LogOptions{Timestamps: true},
			"2026-03-01T10:00:00.000000000Z first\n2026-03-01T10:00:01.000000000Z part-a part-b\n2026-03-01T10:00:03.000000000Z last\n"},
		{"since", LogOptions{Since: t0.Add(2 * time.Second)}, "part-b\nlast\n"},
		{"stderr only", LogOptions{Stream: "stderr"}, "part-a part-b\n"},
		{"limit", LogOptions{LimitBytes: 9}, "first\npar"},
		{"limit exact", LogOptions{LimitBytes: 6}, "first\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			lw := newLogWriter(&out, tc.opts)
			for _, l := range recs {
				r, err := parseCRILogLine([]byte(l))
				if err != nil {
					t.Fatal(err)
				}
				if err := lw.write(r); err != nil {
					if err != errLimitReached {
						t.Fatal(err)
					}
					break
				}
			}
			if out.String() != tc.want {
				t.Fatalf("got %q, want %q", out.String(), tc.want)
			}
		})
	}
}

// follow runs copyLogs in the background on a fake clock that advances
// whenever the follower waits.
type follow struct {
	t       *testing.T
	out     syncBuffer
	running atomic.Bool
	done    chan error
	cancel  context.CancelFunc
	stop    chan struct{}
	wg      sync.WaitGroup
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startFollow(t *testing.T, path string, opts LogOptions) *follow {
	clk := clocktesting.NewFakeClock(t0)
	f := &follow{t: t, done: make(chan error, 1), stop: make(chan struct{})}
	f.running.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() {
		f.done <- copyLogs(ctx, path, opts, &f.out, func() {}, logFollower{clock: clk, poll: 100 * time.Millisecond,
			running: func(context.Context) (bool, error) { return f.running.Load(), nil }})
	}()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			select {
			case <-f.stop:
				return
			default:
			}
			if clk.HasWaiters() {
				clk.Step(100 * time.Millisecond)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	t.Cleanup(func() {
		cancel()
		close(f.stop)
		f.wg.Wait()
	})
	return f
}

func (f *follow) waitOutput(want string) {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for f.out.String() != want {
		if time.Now().After(deadline) {
			f.t.Fatalf("follower wrote %q, want %q", f.out.String(), want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func appendFile(t *testing.T, path, data string) {
	t.Helper()
	fh, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteString(data); err != nil {
		t.Fatal(err)
	}
	fh.Close()
}

func TestCopyLogsNoFollow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	appendFile(t, path, criLine(0, "stdout", "F", "one")+"garbage line\n"+criLine(1, "stdout", "F", "two")+criLine(2, "stdout", "F", "three")+"2026-03-01T10:00:03Z stdout F unterminated")
	for _, tc := range []struct {
		opts LogOptions
		want string
	}{
		{LogOptions{TailLines: -1}, "one\ntwo\nthree\nunterminated"},
		{LogOptions{TailLines: 2}, "two\nthree\n"},
		{LogOptions{TailLines: 0}, ""},
		{LogOptions{TailLines: -1, Since: t0.Add(2 * time.Second)}, "three\nunterminated"},
		{LogOptions{TailLines: -1, LimitBytes: 6}, "one\ntw"},
	} {
		var out bytes.Buffer
		err := copyLogs(context.Background(), path, tc.opts, &out, func() {}, logFollower{})
		if err != nil || out.String() != tc.want {
			t.Errorf("copyLogs(%+v) = %q, %v; want %q", tc.opts, out.String(), err, tc.want)
		}
	}
	var out bytes.Buffer
	if err := copyLogs(context.Background(), path+".missing", LogOptions{TailLines: -1}, &out, func() {}, logFollower{}); err == nil || !strings.Contains(err.Error(), "open log file") {
		t.Errorf("missing file: %v", err)
	}
}

// Following picks up appended lines, completes a line written in two parts,
// switches to a new file when the runtime rotates, restarts after
// truncation, and ends once the container stopped and all is read.
func TestCopyLogsFollow(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	appendFile(t, path, criLine(0, "stdout", "F", "old")+criLine(1, "stdout", "F", "recent"))
	f := startFollow(t, path, LogOptions{Follow: true, TailLines: 1})
	f.waitOutput("recent\n")

	appendFile(t, path, criLine(2, "stdout", "F", "appended"))
	f.waitOutput("recent\nappended\n")
	// A line that arrives in two writes is emitted once, whole.
	half := criLine(3, "stdout", "F", "split line")
	appendFile(t, path, half[:20])
	appendFile(t, path, half[20:])
	f.waitOutput("recent\nappended\nsplit line\n")

	// Rotation: the old file is renamed and a new one created at the path.
	appendFile(t, path, criLine(4, "stdout", "F", "before rotation"))
	if err := os.Rename(path, path+".20260301-100005"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, criLine(5, "stdout", "F", "after rotation"))
	f.waitOutput("recent\nappended\nsplit line\nbefore rotation\nafter rotation\n")

	// copytruncate: the file shrinks in place.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, criLine(6, "stdout", "F", "x"))
	f.waitOutput("recent\nappended\nsplit line\nbefore rotation\nafter rotation\nx\n")

	// The container stops: what is still written is read, then the stream ends.
	appendFile(t, path, criLine(7, "stderr", "F", "last words"))
	f.running.Store(false)
	select {
	case err := <-f.done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("following did not end after the container stopped")
	}
	if got, want := f.out.String(), "recent\nappended\nsplit line\nbefore rotation\nafter rotation\nx\nlast words\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestCopyLogsFollowCancel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	appendFile(t, path, criLine(0, "stdout", "F", "x"))
	f := startFollow(t, path, LogOptions{Follow: true, TailLines: -1})
	f.waitOutput("x\n")
	f.cancel()
	select {
	case err := <-f.done:
		if err != context.Canceled {
			t.Fatalf("copyLogs after cancel = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("copyLogs did not return after cancel")
	}
}
