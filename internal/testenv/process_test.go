package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCmdlineMatches(t *testing.T) {
	tests := []struct {
		name, cmdline string
		want          bool
	}{
		{"ours", "/x/bin/etcd\x00--data-dir=/tmp/kecp1/etcd\x00", true},
		{"no trailing NUL", "etcd\x00--data-dir=/tmp/kecp1/etcd", true},
		{"other binary", "/x/bin/etcdctl\x00--data-dir=/tmp/kecp1/etcd\x00", false},
		{"other dir", "/x/bin/etcd\x00--data-dir=/tmp/kecp2/etcd\x00", false},
		{"dir prefix only", "/x/bin/etcd\x00--data-dir=/tmp/kecp10/etcd\x00", false},
		{"no args", "/x/bin/etcd\x00", false},
		{"zombie", "", false},
	}
	for _, tt := range tests {
		if got := cmdlineMatches([]byte(tt.cmdline), "etcd", "/tmp/kecp1"); got != tt.want {
			t.Errorf("%s: cmdlineMatches = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestParsePID(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr string
	}{
		{"1234\n", 1234, ""},
		{" 42 ", 42, ""},
		{"", 0, `"" is not a number`},
		{"12a", 0, `"12a" is not a number`},
		{"1", 0, "1 is not a valid process id"},
		{"-5", 0, "-5 is not a valid process id"},
	}
	for _, tt := range tests {
		got, err := parsePID([]byte(tt.in))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parsePID(%q) = %d, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parsePID(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestLogTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.log")
	if err := os.WriteFile(path, []byte("one\ntwo\nthree\nfour\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := logTail(path, 2); got != "three\nfour" {
		t.Errorf("logTail(2) = %q", got)
	}
	if got := logTail(path, 10); got != "one\ntwo\nthree\nfour" {
		t.Errorf("logTail(10) = %q", got)
	}
	long := strings.Repeat("x", 10000)
	if err := os.WriteFile(path, []byte(long+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := logTail(path, 2); len(got) != 4096+3 || !strings.HasPrefix(got, "...") {
		t.Errorf("logTail of a long line: %d bytes, want capped to 4096 plus ellipsis", len(got))
	}
	if got := logTail(filepath.Join(t.TempDir(), "absent"), 2); !strings.HasPrefix(got, "(no log:") {
		t.Errorf("logTail(absent) = %q", got)
	}
}
