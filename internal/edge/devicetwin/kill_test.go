package devicetwin

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/store"
)

const killChildEnv = "KUBEEDGE_DEVICETWIN_KILL_CHILD"

// runKillChild is the child process of TestKill9LosesNoAckedReport: it
// reports increasing values as fast as it can and prints "ACK n" after each
// report DeviceTwin acknowledged, until it is killed.
func runKillChild() bool {
	path := os.Getenv(killChildEnv)
	if path == "" {
		return false
	}
	ctx := context.Background()
	s, err := store.Open(ctx, path)
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	dt, err := New(Config{NodeName: "node-a"}, Deps{Store: s, Clock: clock.RealClock{}})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	go func() { _ = dt.Run(ctx) }()
	out := bufio.NewWriter(os.Stdout)
	for i := 1; ; i++ {
		v := strconv.Itoa(i)
		if err := dt.ReportTwins(ctx, "default/t1", []Report{{Property: "setpoint", Reported: &v}}); err != nil {
			fmt.Fprintln(out, "ERR", err)
			out.Flush()
			os.Exit(2)
		}
		fmt.Fprintln(out, "ACK", i)
		out.Flush()
		if i == 100 {
			i = 0 // stay within the model's range (1..100)
		}
	}
}

// TestKill9LosesNoAckedReport kills a process running DeviceTwin on SQLite
// with SIGKILL while it reports, then reopens the database: the last
// acknowledged value (or the one after it, committed but not yet printed) is
// there and still marked for the cloud.
func TestKill9LosesNoAckedReport(t *testing.T) {
	dir, err := os.MkdirTemp("", "kedt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "edge.db")
	ctx := context.Background()
	s, err := store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	model := testModel()
	putObject(t, s, TypeDeviceModel, model, model)
	dev := testDevice("t1", "node-a", nil)
	putObject(t, s, TypeDevice, dev, dev)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), killChildEnv+"="+path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	sc := bufio.NewScanner(stdout)
	acks, last := 0, 0
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "ACK "); ok {
			acks++
			last, _ = strconv.Atoi(rest)
			if acks == 200 {
				// Kill while it keeps writing; lines already printed are
				// still read below.
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		t.Fatalf("child: %s", line)
	}
	_ = cmd.Wait()
	killed = true
	if acks < 200 {
		t.Fatalf("child acknowledged only %d reports", acks)
	}

	s, err = store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	o, err := s.Get(ctx, TypeTwinDoc, "default", "t1")
	if err != nil {
		t.Fatal(err)
	}
	var doc twinDoc
	if err := json.Unmarshal(o.Value, &doc); err != nil {
		t.Fatal(err)
	}
	got, _ := strconv.Atoi(doc.Props["setpoint"].Actual.Value)
	next := last%100 + 1
	if got != last && got != next {
		t.Fatalf("after kill -9 the stored value is %d; the last acknowledged was %d (or %d if committed unprinted)", got, last, next)
	}
	if doc.Seq <= doc.Synced || doc.Seq < int64(acks) {
		t.Errorf("seq %d synced %d after %d acknowledged reports: they are not marked for the cloud", doc.Seq, doc.Synced, acks)
	}
}
