package keadm

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clocktesting "k8s.io/utils/clock/testing"

	edgeconfig "github.com/kubeedge-go/kubeedge/internal/edge/config"
)

func TestJoinFlagErrors(t *testing.T) {
	_, tok := testToken(t)
	dir := t.TempDir()
	base := map[string]string{
		"cloudcore-ipport": "192.168.1.10:10000",
		"token":            tok,
		"edgenode-name":    "edge-1",
		"data-dir":         dir,
		"config":           filepath.Join(dir, "edgecore.yaml"),
		"prepare-only":     "true",
	}
	for _, tc := range []struct {
		name string
		set  map[string]string
		want []string
	}{
		{"missing cloudcore", map[string]string{"cloudcore-ipport": ""}, []string{"--cloudcore-ipport is required"}},
		{"cloudcore without port", map[string]string{"cloudcore-ipport": "192.168.1.10"}, []string{`--cloudcore-ipport "192.168.1.10": want HOST:PORT`}},
		{"cloudcore empty host", map[string]string{"cloudcore-ipport": ":10000"}, []string{"the host is empty"}},
		{"cloudcore bad port", map[string]string{"cloudcore-ipport": "h:70000"}, []string{`port "70000" is not a number in 1-65535`}},
		{"missing token", map[string]string{"token": ""}, []string{"--token is required", "keadm gettoken"}},
		{"token without dot", map[string]string{"token": "abc"}, []string{"--token: pki: malformed token: no '.'"}},
		{"token short hash", map[string]string{"token": "abcd.x.y.z"}, []string{"--token: pki: malformed token: CA hash is 4 characters"}},
		{"node name upper case", map[string]string{"edgenode-name": "Edge1"}, []string{"--edgenode-name: pki: node name \"Edge1\" contains 'E'"}},
		{"node name dash", map[string]string{"edgenode-name": "-edge"}, []string{"--edgenode-name", "must start and end with a lowercase letter or digit"}},
		{"certport range", map[string]string{"certport": "0"}, []string{"--certport 0 is out of range 1-65535"}},
		{"quicport range", map[string]string{"quicport": "65536"}, []string{"--quicport 65536 is out of range 1-65535"}},
		{"hub protocol", map[string]string{"hub-protocol": "mqtt"}, []string{`--hub-protocol "mqtt": want websocket or quic`}},
		{"runtime endpoint", map[string]string{"remote-runtime-endpoint": "/run/containerd.sock"}, []string{"--remote-runtime-endpoint", "want unix:///path/to/socket or tcp://host:port"}},
		{"label without value", map[string]string{"labels": "zone"}, []string{`--labels: "zone": want key=value`}},
		{"label bad key", map[string]string{"labels": "-zone=a"}, []string{`--labels: key "-zone"`}},
		{"label bad value", map[string]string{"labels": "zone=a b"}, []string{`--labels: value "a b" of "zone"`}},
		{"label twice", map[string]string{"labels": "zone=a,zone=b"}, []string{`key "zone" given twice`}},
		{"node ip", map[string]string{"node-ip": "10.0.0"}, []string{`--node-ip "10.0.0" is not an IP address`}},
		{"missing binary", map[string]string{"edgecore-binary": filepath.Join(dir, "nope")}, []string{"--edgecore-binary", "nope"}},
		{"every problem at once", map[string]string{"certport": "0", "node-ip": "x"}, []string{"2 problems with the flags:\n  --certport 0", "\n  --node-ip \"x\""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"join"}
			for k, v := range base {
				if nv, ok := tc.set[k]; ok {
					v = nv
				}
				args = append(args, "--"+k+"="+v)
			}
			for k, v := range tc.set {
				if _, ok := base[k]; !ok {
					args = append(args, "--"+k+"="+v)
				}
			}
			fb := &fakeBootstrap{}
			r := run(t.Context(), Deps{Bootstrap: fb.bootstrap}, args...)
			r.mustErr(t, tc.want...)
			if len(fb.reqs) != 0 || exists(base["config"]) {
				t.Error("join did work despite invalid flags")
			}
		})
	}
}

// TestJoinWritesConfig checks the written file, loaded back the way
// edgecore loads it, field by field against the flags.
func TestJoinWritesConfig(t *testing.T) {
	_, tok := testToken(t)
	for _, tc := range []struct {
		name  string
		extra []string
		want  func(c *edgeconfig.EdgeCore, dir string)
	}{
		{
			name:  "websocket",
			extra: []string{"--labels=zone=north,rack=r1", "--node-ip=10.1.2.3", "--remote-runtime-endpoint=unix:///run/crio/crio.sock"},
			want: func(c *edgeconfig.EdgeCore, dir string) {
				c.Modules.Edged.NodeLabels = map[string]string{"zone": "north", "rack": "r1"}
				c.Modules.Edged.NodeIP = "10.1.2.3"
				c.Modules.Edged.RemoteRuntimeEndpoint = "unix:///run/crio/crio.sock"
			},
		},
		{
			name:  "quic on other ports",
			extra: []string{"--hub-protocol=quic", "--quicport=20001", "--certport=20002", "--kubeedge-version=v1.21.0"},
			want: func(c *edgeconfig.EdgeCore, dir string) {
				c.Modules.EdgeHub.WebSocket.Enable = false
				c.Modules.EdgeHub.Quic = edgeconfig.HubAddr{Enable: true, Server: "cloud.example.com:20001"}
				c.Modules.EdgeHub.HTTPServer = "https://cloud.example.com:20002"
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfgPath := filepath.Join(dir, "etc", "edgecore.yaml")
			fb := &fakeBootstrap{}
			args := append([]string{"join", "--cloudcore-ipport=cloud.example.com:10000", "--token=" + tok,
				"--edgenode-name=edge-1", "--data-dir=" + dir, "--config=" + cfgPath, "--prepare-only"}, tc.extra...)
			r := run(t.Context(), Deps{Bootstrap: fb.bootstrap}, args...)
			r.mustSucceed(t)

			got, err := edgeconfig.Load(cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			want := edgeconfig.Default("edge-1")
			want.Database.DataSource = filepath.Join(dir, "edgecore.db")
			want.Database.EncryptionKeyFile = filepath.Join(dir, "keys", "store.key")
			want.Modules.Edged.RootDirectory = filepath.Join(dir, "edged")
			want.Modules.Edged.PodLogsDirectory = filepath.Join(dir, "pod-logs")
			if sock := filepath.Join(dir, "dmi.sock"); len(sock) < 100 {
				want.Modules.DMI.Socket = sock
			}
			h := &want.Modules.EdgeHub
			h.Token = tok
			h.HTTPServer = "https://cloud.example.com:10002"
			h.WebSocket = edgeconfig.HubAddr{Enable: true, Server: "cloud.example.com:10000"}
			h.Quic = edgeconfig.HubAddr{Enable: false, Server: "cloud.example.com:10001"}
			h.TLSCAFile = filepath.Join(dir, "ca", "rootCA.crt")
			h.TLSCertFile = filepath.Join(dir, "certs", "server.crt")
			h.TLSPrivateKeyFile = filepath.Join(dir, "certs", "server.key")
			tc.want(want, dir)
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("configuration (-want +got):\n%s", d)
			}
			fi, err := os.Stat(cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("configuration mode %v, want 0600: it holds the token", fi.Mode().Perm())
			}

			if len(fb.reqs) != 1 {
				t.Fatalf("bootstrap called %d times, want 1", len(fb.reqs))
			}
			wantReq := BootstrapRequest{Server: want.Modules.EdgeHub.HTTPServer, Token: tok, NodeName: "edge-1",
				CAFile: h.TLSCAFile, CertFile: h.TLSCertFile, KeyFile: h.TLSPrivateKeyFile}
			if d := cmp.Diff(wantReq, fb.reqs[0]); d != "" {
				t.Errorf("bootstrap request (-want +got):\n%s", d)
			}
			for _, line := range []string{"[1/2] writing configuration to " + cfgPath, "[2/2] fetching certificates from " + want.Modules.EdgeHub.HTTPServer} {
				if !strings.Contains(r.stdout, line+"\n") {
					t.Errorf("output lacks %q:\n%s", line, r.stdout)
				}
			}
		})
	}
}

func TestJoinNotesIgnoredVersion(t *testing.T) {
	_, tok := testToken(t)
	dir := t.TempDir()
	fb := &fakeBootstrap{}
	r := run(t.Context(), Deps{Bootstrap: fb.bootstrap}, "join", "-e", "127.0.0.1:10000", "-t", tok, "-i", "edge-1",
		"--data-dir", dir, "-c", filepath.Join(dir, "edgecore.yaml"), "--prepare-only", "--kubeedge-version=v1.20.0")
	r.mustSucceed(t)
	if !strings.Contains(r.stderr, "--kubeedge-version=v1.20.0 is ignored") {
		t.Errorf("stderr lacks the note on --kubeedge-version:\n%s", r.stderr)
	}
}

func TestJoinPrepareOnlyPrintsCommand(t *testing.T) {
	_, tok := testToken(t)
	dir := filepath.Join(t.TempDir(), "data dir")
	bin := fakeEdgecoreBinary(t, "connect")
	cfgPath := filepath.Join(dir, "edgecore.yaml")
	fb := &fakeBootstrap{}
	r := run(t.Context(), Deps{Bootstrap: fb.bootstrap}, "join", "-e", "127.0.0.1:10000", "-t", tok, "-i", "edge-1",
		"--data-dir", dir, "-c", cfgPath, "--prepare-only", "--edgecore-binary", bin)
	r.mustSucceed(t)
	want := "edge node edge-1 is prepared; start edgecore with:\n  " + bin + " --config '" + cfgPath + "'\n"
	if !strings.HasSuffix(r.stdout, want) {
		t.Errorf("output:\n%s\nwant it to end with:\n%s", r.stdout, want)
	}
	if exists(filepath.Join(dir, "edgecore.pid")) {
		t.Error("--prepare-only started edgecore")
	}
}

func TestJoinRefusesToOverwrite(t *testing.T) {
	_, tok := testToken(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "edgecore.yaml")
	fb := &fakeBootstrap{}
	args := []string{"join", "-e", "127.0.0.1:10000", "-t", tok, "-i", "edge-1", "--data-dir", dir, "-c", cfgPath, "--prepare-only"}
	run(t.Context(), Deps{Bootstrap: fb.bootstrap}, args...).mustSucceed(t)
	before, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}

	args[6] = "edge-2"
	run(t.Context(), Deps{Bootstrap: fb.bootstrap}, args...).mustErr(t, "an earlier join left "+cfgPath+", "+filepath.Join(dir, "ca", "rootCA.crt"), "keadm reset", "--force")
	after, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Error("configuration changed although join refused")
	}

	run(t.Context(), Deps{Bootstrap: fb.bootstrap}, append(args, "--force")...).mustSucceed(t)
	c, err := edgeconfig.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeName() != "edge-2" {
		t.Errorf("node name after --force is %q, want edge-2", c.NodeName())
	}
}

func TestJoinBootstrapFailure(t *testing.T) {
	_, tok := testToken(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "edgecore.yaml")
	fb := &fakeBootstrap{err: errors.New("cloud said 401: pki: token expired")}
	r := run(t.Context(), Deps{Bootstrap: fb.bootstrap}, "join", "-e", "127.0.0.1:10000", "-t", tok, "-i", "edge-1",
		"--data-dir", dir, "-c", cfgPath, "--prepare-only")
	r.mustErr(t, "fetch certificates: cloud said 401: pki: token expired")
	if exists(cfgPath) {
		t.Error("configuration left behind after a failed join; a retry would need --force")
	}
}

// TestJoinStartsEdgecore runs the whole join against a fake edgecore
// process, then reset.
func TestJoinStartsEdgecore(t *testing.T) {
	_, tok := testToken(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config", "edgecore.yaml")
	bin := fakeEdgecoreBinary(t, "connect")
	kids := newChildren(t)
	fb := &fakeBootstrap{}
	d := Deps{Bootstrap: fb.bootstrap, StartEdgecore: kids.start}

	// A line left by an earlier run must not count as this run's connection.
	if err := os.WriteFile(filepath.Join(dir, "edgecore.log"), []byte("old run: "+ConnectedMessage+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t.Context(), d, "join", "-e", "127.0.0.1:10000", "-t", tok, "-i", "edge-1",
		"--data-dir", dir, "-c", cfgPath, "--edgecore-binary", bin)
	r.mustSucceed(t)
	proc := kids.only(t)
	for _, line := range []string{
		"[1/4] writing configuration to " + cfgPath,
		"[2/4] fetching certificates from https://127.0.0.1:10002",
		"[3/4] starting " + bin + " (log: " + filepath.Join(dir, "edgecore.log") + ")",
		"[4/4] waiting for edgecore (pid " + strconv.Itoa(proc.Pid()) + ") to connect to 127.0.0.1:10000",
		"edge node edge-1 joined",
	} {
		if !strings.Contains(r.stdout, line+"\n") {
			t.Errorf("output lacks %q:\n%s", line, r.stdout)
		}
	}
	if err := proc.Exited(); err != nil {
		t.Fatalf("edgecore is not running after join: %v", err)
	}
	pidFile, err := os.ReadFile(filepath.Join(dir, "edgecore.pid"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(pidFile)); got != strconv.Itoa(proc.Pid()) {
		t.Errorf("pid file says %s, edgecore is %d", got, proc.Pid())
	}

	// A second join must not start a second edgecore on the same files.
	run(t.Context(), d, "join", "-e", "127.0.0.1:10000", "-t", tok, "-i", "edge-1",
		"--data-dir", dir, "-c", cfgPath, "--edgecore-binary", bin, "--force").
		mustErr(t, "edgecore is already running (pid "+strconv.Itoa(proc.Pid()), "keadm reset")

	// The database is edgecore's; create it as edgecore would.
	db := filepath.Join(dir, "edgecore.db")
	for _, f := range []string{db, db + "-wal"} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r = run(t.Context(), Deps{}, "reset", "--data-dir", dir, "-c", cfgPath, "--force")
	r.mustSucceed(t)
	if !strings.Contains(r.stdout, "stopped edgecore (pid "+strconv.Itoa(proc.Pid())+")") {
		t.Errorf("reset output lacks the stop:\n%s", r.stdout)
	}
	waitFor(t, "edgecore to exit", func() bool { return proc.Exited() != nil })
	if err := proc.Exited(); err.Error() != "edgecore (pid "+strconv.Itoa(proc.Pid())+") exited with status 0" {
		t.Errorf("edgecore ended with %v, want a clean exit after SIGTERM", err)
	}
	var left []string
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if p != dir {
			left = append(left, p)
		}
		return err
	})
	if len(left) > 0 {
		t.Errorf("reset left %q", left)
	}
}

func TestJoinEdgecoreExits(t *testing.T) {
	_, tok := testToken(t)
	dir := t.TempDir()
	bin := fakeEdgecoreBinary(t, "exit")
	kids := newChildren(t)
	fb := &fakeBootstrap{}
	r := run(t.Context(), Deps{Bootstrap: fb.bootstrap, StartEdgecore: kids.start}, "join", "-e", "127.0.0.1:10000",
		"-t", tok, "-i", "edge-1", "--data-dir", dir, "-c", filepath.Join(dir, "edgecore.yaml"), "--edgecore-binary", bin)
	r.mustErr(t, "exited with status 3 before connecting", "last lines of "+filepath.Join(dir, "edgecore.log"),
		"edgecore: open database: permission denied")
}

func TestJoinTimesOut(t *testing.T) {
	_, tok := testToken(t)
	dir := t.TempDir()
	bin := fakeEdgecoreBinary(t, "hang")
	kids := newChildren(t)
	clk := clocktesting.NewFakeClock(time.Now())
	fb := &fakeBootstrap{}
	done := make(chan result, 1)
	go func() {
		done <- run(t.Context(), Deps{Bootstrap: fb.bootstrap, StartEdgecore: kids.start, Clock: clk}, "join",
			"-e", "127.0.0.1:10000", "-t", tok, "-i", "edge-1", "--data-dir", dir, "-c", filepath.Join(dir, "edgecore.yaml"),
			"--edgecore-binary", bin)
	}()
	// Let the process log before moving time on, so the timeout is the
	// only way this join can end.
	logFile := filepath.Join(dir, "edgecore.log")
	waitFor(t, "the fake edgecore to log", func() bool {
		b, _ := os.ReadFile(logFile)
		return strings.Contains(string(b), "dialing the cloud")
	})
	var r result
	waitFor(t, "join to time out", func() bool {
		select {
		case r = <-done:
			return true
		default:
		}
		if clk.HasWaiters() {
			clk.Step(time.Second)
		}
		return false
	})
	r.mustErr(t, "did not connect within 30s", "it keeps running", "keadm reset", "dialing the cloud")
	if err := kids.only(t).Exited(); err != nil {
		t.Errorf("edgecore should be left running for the user to inspect, but %v", err)
	}
}
