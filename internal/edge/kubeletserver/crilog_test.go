package kubeletserver

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseCRILogLine(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	for _, tc := range []struct {
		in      string
		want    logRecord
		wantErr string
	}{
		{in: "2026-01-02T03:04:05.123456789Z stdout F hello world\n", want: logRecord{ts, "stdout", false, []byte("hello world\n")}},
		{in: "2026-01-02T03:04:05.123456789Z stderr P part\n", want: logRecord{ts, "stderr", true, []byte("part")}},
		{in: "2026-01-02T03:04:05.123456789Z stdout F \n", want: logRecord{ts, "stdout", false, []byte("\n")}},
		{in: "2026-01-02T03:04:05.123456789Z stdout F no newline", want: logRecord{ts, "stdout", false, []byte("no newline")}},
		{in: "2026-01-02T03:04:05.123456789Z stdout F:x:y  two spaces\n", want: logRecord{ts, "stdout", false, []byte(" two spaces\n")}},
		{in: "2026-01-02T04:04:05.123456789+01:00 stdout F tz\n", want: logRecord{ts, "stdout", false, []byte("tz\n")}},
		{in: "2026-01-02T03:04:05Z stdout F short ts\n", want: logRecord{ts.Truncate(time.Second), "stdout", false, []byte("short ts\n")}},
		{in: "", wantErr: "no space after the timestamp"},
		{in: "2026-01-02T03:04:05Z\n", wantErr: "no space after the timestamp"},
		{in: "yesterday stdout F x\n", wantErr: `timestamp "yesterday"`},
		{in: "2026-01-02T03:04:05Z stdin F x\n", wantErr: `stream "stdin"`},
		{in: "2026-01-02T03:04:05Z stdout\n", wantErr: "no space after the stream"},
		{in: "2026-01-02T03:04:05Z stdout F\n", wantErr: "no space after the tags"},
		{in: "2026-01-02T03:04:05Z stdout X x\n", wantErr: `tag "X"`},
		{in: `{"log":"docker json\n","stream":"stdout","time":"2026-01-02T03:04:05Z"}` + "\n", wantErr: "timestamp"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseCRILogLine([]byte(tc.in))
			if tc.wantErr != "" {
				if !errors.Is(err, ErrBadLogLine) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got.Time = got.Time.UTC()
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzParseCRILogLine: the parser never panics, and what it accepts renders
// back (timestamp, stream, tag, content) to a line that parses the same.
func FuzzParseCRILogLine(f *testing.F) {
	for _, s := range []string{
		"2026-01-02T03:04:05.123456789Z stdout F hello\n",
		"2026-01-02T03:04:05Z stderr P part",
		"2026-01-02T03:04:05.1+07:00 stdout F:a:b x y z\n",
		"x y z w", "", " ", "2026-13-45T99:99:99Z stdout F x\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := parseCRILogLine(line)
		if err != nil {
			return
		}
		if r.Stream != streamStdout && r.Stream != streamStderr {
			t.Fatalf("stream %q", r.Stream)
		}
		tag := "F"
		if r.Partial {
			tag = "P"
		}
		again := append([]byte(r.Time.Format(time.RFC3339Nano)+" "+r.Stream+" "+tag+" "), r.Content...)
		if r.Partial { // a partial record's line ends in a newline that is not content
			again = append(again, '\n')
		}
		r2, err := parseCRILogLine(again)
		if err != nil {
			t.Fatalf("re-rendered line %q does not parse: %v", again, err)
		}
		if !r2.Time.Equal(r.Time) || r2.Stream != r.Stream || !bytes.Equal(r2.Content, r.Content) {
			t.Fatalf("round trip of %q: %+v vs %+v", line, r, r2)
		}
	})
}
