package memtrim

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/kubeedge-go/kubeedge/internal/testenv"
)

const sampleMaps = `00400000-011c3000 r-xp 00000000 fe:00 9977953                            /usr/bin/edgecore
011c3000-02020000 r--p 00dc3000 fe:00 9977953                            /usr/bin/edgecore
02020000-020b6000 rw-p 01c20000 fe:00 9977953                            /usr/bin/edgecore
020b6000-04104000 rw-p 00000000 00:00 0
c000000000-c000400000 rw-p 00000000 00:00 0
7f0000000000-7f0000001000 r--p 00000000 fe:00 12                         /usr/lib/with space/lib.so
7f0000002000-7f0000003000 r-xp 00000000 fe:00 13                         /usr/bin/edgecore (deleted)
7ffd0000000-7ffd0021000 rw-p 00000000 00:00 0                          [stack]
`

func TestReadOnlyMappingsOf(t *testing.T) {
	maps, err := ParseMaps(strings.NewReader(sampleMaps))
	if err != nil {
		t.Fatal(err)
	}
	if len(maps) != 8 {
		t.Fatalf("parsed %d mappings, want 8", len(maps))
	}
	if maps[5].Path != "/usr/lib/with space/lib.so" {
		t.Errorf("path with a space: %q", maps[5].Path)
	}
	ro := ReadOnlyMappingsOf(maps, "/usr/bin/edgecore")
	if len(ro) != 3 {
		t.Fatalf("selected %d mappings, want text, rodata and the replaced binary's text: %+v", len(ro), ro)
	}
	if ro[0].Start != 0x400000 || ro[0].End != 0x11c3000 || ro[1].Perms != "r--p" || ro[2].Start != 0x7f0000002000 {
		t.Errorf("wrong mappings: %+v", ro)
	}
	for _, m := range ro {
		if strings.Contains(m.Perms, "w") {
			t.Errorf("writable mapping selected: %+v", m)
		}
	}
}

func TestParseMapsRejectsGarbage(t *testing.T) {
	for _, in := range []string{
		"not a maps line\n",
		"00400000 r-xp 00000000 fe:00 1 /bin/x\n",
		"zz-011c3000 r-xp 00000000 fe:00 1 /bin/x\n",
		"00400000-yy r-xp 00000000 fe:00 1 /bin/x\n",
		"00500000-00400000 r-xp 00000000 fe:00 1 /bin/x\n",
	} {
		if _, err := ParseMaps(strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), "maps line 1") {
			t.Errorf("%q: error %v, want one naming line 1", in, err)
		}
	}
}

func rssFileKiB(t *testing.T) int64 {
	t.Helper()
	n, err := testenv.ProcStatusKiB(0, "RssFile")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The real thing: this test binary's own executable pages.
func TestReleaseExecutablePagesShrinksRSS(t *testing.T) {
	_, statErr := os.Stat("/proc/self/maps")
	testenv.Require(t, statErr == nil, fmt.Sprintf("no /proc here: %v", statErr))
	before := rssFileKiB(t)
	covered, err := ReleaseExecutablePages()
	testenv.Require(t, !errors.Is(err, ErrUnsupported), fmt.Sprintf("kernel without MADV_PAGEOUT: %v", err))
	if err != nil {
		t.Fatal(err)
	}
	after := rssFileKiB(t)
	t.Logf("RssFile %d KiB -> %d KiB, %d KiB of read-only mappings paged out", before, after, covered>>10)
	if covered == 0 {
		t.Fatal("no address space covered")
	}
	if after >= before {
		t.Errorf("RssFile did not shrink: %d KiB before, %d KiB after", before, after)
	}
}

func FuzzParseMaps(f *testing.F) {
	f.Add(sampleMaps)
	f.Add("00400000-011c3000 r-xp 00000000 fe:00 1\n")
	f.Add("-\n")
	f.Fuzz(func(t *testing.T, in string) {
		maps, err := ParseMaps(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, m := range maps {
			if m.End < m.Start {
				t.Fatalf("accepted a mapping that ends before it starts: %+v", m)
			}
		}
	})
}
