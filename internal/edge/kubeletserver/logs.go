package kubeletserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"time"

	"k8s.io/utils/clock"
)

// LogOptions are the query parameters of /containerLogs, as the apiserver
// passes them from PodLogOptions.
type LogOptions struct {
	Follow     bool
	Previous   bool
	Timestamps bool
	// TailLines is the number of last lines to show; negative means all.
	TailLines int64
	// Since drops records older than it; zero means none.
	Since time.Time
	// LimitBytes stops after this many bytes of output; 0 means no limit.
	LimitBytes int64
	// Stream restricts the output to "stdout" or "stderr"; "" means both.
	Stream string
}

// ParseLogOptions reads the query of a /containerLogs request; now
// resolves sinceSeconds. Errors name the bad parameter.
func ParseLogOptions(q url.Values, now time.Time) (LogOptions, error) {
	o := LogOptions{TailLines: -1}
	var err error
	for _, b := range []struct {
		name string
		dst  *bool
	}{{"follow", &o.Follow}, {"previous", &o.Previous}, {"timestamps", &o.Timestamps}} {
		if *b.dst, err = boolParam(q, b.name); err != nil {
			return o, err
		}
	}
	if v := q.Get("tailLines"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return o, fmt.Errorf("tailLines %q is not a non-negative integer", v)
		}
		o.TailLines = n
	}
	if v := q.Get("limitBytes"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return o, fmt.Errorf("limitBytes %q is not a positive integer", v)
		}
		o.LimitBytes = n
	}
	sinceSeconds, sinceTime := q.Get("sinceSeconds"), q.Get("sinceTime")
	switch {
	case sinceSeconds != "" && sinceTime != "":
		return o, errors.New("sinceSeconds and sinceTime are mutually exclusive")
	case sinceSeconds != "":
		n, err := strconv.ParseInt(sinceSeconds, 10, 64)
		if err != nil || n <= 0 {
			return o, fmt.Errorf("sinceSeconds %q is not a positive integer", sinceSeconds)
		}
		o.Since = now.Add(-time.Duration(n) * time.Second)
	case sinceTime != "":
		t, err := time.Parse(time.RFC3339, sinceTime)
		if err != nil {
			return o, fmt.Errorf("sinceTime %q is not an RFC 3339 time: %v", sinceTime, err)
		}
		o.Since = t
	}
	// PodLogOptions.stream (Kubernetes 1.32+): All, Stdout or Stderr.
	switch v := q.Get("stream"); v {
	case "", "All":
	case "Stdout":
		o.Stream = streamStdout
	case "Stderr":
		o.Stream = streamStderr
	default:
		return o, fmt.Errorf("stream %q is not one of All, Stdout, Stderr", v)
	}
	return o, nil
}

func boolParam(q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s %q is not a boolean", name, v)
	}
	return b, nil
}

// errLimitReached ends a copy at LimitBytes; it is not an error for the client.
var errLimitReached = errors.New("log byte limit reached")

// logWriter renders records the way the kubelet does: the content, with a
// fixed-width timestamp in front of each line when asked, cut at the byte
// limit.
type logWriter struct {
	w         io.Writer
	opts      LogOptions
	remaining int64 // bytes left before LimitBytes; <0 when unlimited
	lineStart bool  // the next record starts a new output line
	buf       []byte
}

func newLogWriter(w io.Writer, opts LogOptions) *logWriter {
	lw := &logWriter{w: w, opts: opts, remaining: -1, lineStart: true}
	if opts.LimitBytes > 0 {
		lw.remaining = opts.LimitBytes
	}
	return lw
}

// write renders r; it returns errLimitReached once the limit is hit.
func (lw *logWriter) write(r logRecord) error {
	if !lw.opts.Since.IsZero() && r.Time.Before(lw.opts.Since) {
		return nil
	}
	if lw.opts.Stream != "" && r.Stream != lw.opts.Stream {
		return nil
	}
	out := r.Content
	if lw.opts.Timestamps && lw.lineStart {
		lw.buf = append(lw.buf[:0], r.Time.Format(timeFormatOut)...)
		lw.buf = append(lw.buf, ' ')
		lw.buf = append(lw.buf, r.Content...)
		out = lw.buf
	}
	lw.lineStart = len(r.Content) == 0 || r.Content[len(r.Content)-1] == '\n'
	limited := false
	if lw.remaining >= 0 && int64(len(out)) >= lw.remaining {
		out, limited = out[:lw.remaining], true
	}
	n, err := lw.w.Write(out)
	if lw.remaining >= 0 {
		lw.remaining -= int64(n)
	}
	if err != nil {
		return err
	}
	if limited {
		return errLimitReached
	}
	return nil
}

// tailStart returns the offset of the first of the last n complete lines of
// f ('\n'-terminated; an unterminated last line is not counted). n < 0 means
// the whole file.
func tailStart(f io.ReadSeeker, n int64) (int64, error) {
	if n < 0 {
		return 0, nil
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, err
	}
	const block = 32 << 10
	buf := make([]byte, block)
	end := size
	// Skip the unterminated tail, if any: scan backwards for the last '\n'.
	var seen int64 // newlines seen so far (the first one ends the last complete line)
	for end > 0 {
		start := max(end-block, 0)
		chunk := buf[:end-start]
		if _, err := f.Seek(start, io.SeekStart); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(f, chunk); err != nil {
			return 0, err
		}
		for i := len(chunk) - 1; i >= 0; i-- {
			if chunk[i] != '\n' {
				continue
			}
			// The line after this '\n' starts at start+i+1; it is the
			// seen-th complete line from the end.
			if seen == n {
				return start + int64(i) + 1, nil
			}
			seen++
		}
		end = start
	}
	return 0, nil
}

// logFollower reads one log file and, when following, waits for more and
// for rotation (a new file at the same path) or truncation.
type logFollower struct {
	path    string
	f       *os.File
	r       *bufio.Reader
	offset  int64  // bytes of f consumed by r's reads so far
	partial []byte // an unterminated line carried across EOF
	clock   clock.Clock
	poll    time.Duration
	// running reports whether the container still runs; following stops
	// at the end of the file once it does not.
	running func(context.Context) (bool, error)

	checked    time.Time // last running call
	wasRunning bool      // its answer
}

// copyLogs writes the records of path to w per opts and returns when done:
// at the end of the file (or after TailLines records) without Follow; with
// Follow when the container stopped and everything was read, or ctx ends.
// flush is called whenever the reader has caught up with the file.
func copyLogs(ctx context.Context, path string, opts LogOptions, w io.Writer, flush func(), lf logFollower) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open log file: %w", err)
	}
	lf.path, lf.f = path, f
	defer func() { _ = lf.f.Close() }()
	start, err := tailStart(f, opts.TailLines)
	if err != nil {
		return fmt.Errorf("log file %s: find the last %d lines: %w", path, opts.TailLines, err)
	}
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return fmt.Errorf("log file %s: %w", path, err)
	}
	lf.offset = start
	lf.r = bufio.NewReaderSize(f, 64<<10)
	lw := newLogWriter(w, opts)
	// Without follow, TailLines also bounds what is read: lines appended
	// while reading are not shown.
	left := int64(-1)
	if opts.TailLines >= 0 && !opts.Follow {
		left = opts.TailLines
	}
	emit := func(line []byte) error {
		rec, err := parseCRILogLine(line)
		if err != nil {
			return nil // the kubelet skips unparsable lines too
		}
		if err := lw.write(rec); err != nil {
			return err
		}
		if left > 0 {
			left--
		}
		return nil
	}
	stopped := false // the container was seen not running
	for left != 0 {
		line, err := lf.r.ReadSlice('\n')
		lf.offset += int64(len(line))
		switch {
		case err == nil:
			if len(lf.partial) > 0 {
				line = append(lf.partial, line...)
				lf.partial = lf.partial[:0]
			}
			if err := emit(line); err != nil {
				return endOfLogs(err)
			}
			continue
		case errors.Is(err, bufio.ErrBufferFull):
			lf.partial = append(lf.partial, line...) // a very long line
			continue
		case !errors.Is(err, io.EOF):
			return fmt.Errorf("read log file %s: %w", path, err)
		}
		lf.partial = append(lf.partial, line...)
		flush()
		if !opts.Follow || stopped {
			if len(lf.partial) > 0 {
				if err := emit(lf.partial); err != nil {
					return endOfLogs(err)
				}
			}
			return nil
		}
		// Caught up: wait for more, a new file, or the container to stop.
		running, err := lf.isRunning(ctx)
		if err != nil {
			return fmt.Errorf("container status: %w", err)
		}
		if !running {
			stopped = true // read what is left, then stop
			continue
		}
		if err := lf.wait(ctx); err != nil {
			return err
		}
	}
	flush()
	return nil
}

func endOfLogs(err error) error {
	if errors.Is(err, errLimitReached) {
		return nil
	}
	return err
}

// wait sleeps until the file may have grown, been replaced or truncated,
// and switches to a replacement.
func (lf *logFollower) wait(ctx context.Context) error {
	deadline := lf.clock.Now().Add(time.Second) // re-check the container about every second
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-lf.clock.After(lf.poll):
		}
		cur, err := lf.f.Stat()
		if err != nil {
			return fmt.Errorf("log file %s: %w", lf.path, err)
		}
		if cur.Size() > lf.offset {
			return nil
		}
		if cur.Size() < lf.offset { // truncated in place (copytruncate)
			if _, err := lf.f.Seek(0, io.SeekStart); err != nil {
				return fmt.Errorf("log file %s: %w", lf.path, err)
			}
			lf.r.Reset(lf.f)
			lf.offset, lf.partial = 0, lf.partial[:0]
			return nil
		}
		if next, err := os.Stat(lf.path); err == nil && !os.SameFile(cur, next) {
			// Rotated: the runtime writes to a new file at the path now;
			// the old one was read to its end.
			nf, err := os.Open(lf.path)
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					continue
				}
				return fmt.Errorf("log file %s: %w", lf.path, err)
			}
			_ = lf.f.Close()
			lf.f = nf
			lf.r.Reset(nf)
			lf.offset, lf.partial = 0, lf.partial[:0]
			return nil
		}
		if !lf.clock.Now().Before(deadline) {
			return nil
		}
	}
}

// isRunning asks the runtime whether the container runs, at most once a
// second: following a busy log must not turn into a status call per poll.
func (lf *logFollower) isRunning(ctx context.Context) (bool, error) {
	now := lf.clock.Now()
	if !lf.checked.IsZero() && now.Sub(lf.checked) < time.Second {
		return lf.wasRunning, nil
	}
	running, err := lf.running(ctx)
	if err != nil {
		return false, err
	}
	lf.checked, lf.wasRunning = now, running
	return running, nil
}
