package devicepeers

import (
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/kubeedge-go/kubeedge/internal/testenv"
)

// NodeOPCUAVersion is the node-opcua release the OPC-UA peer runs on.
const NodeOPCUAVersion = "2.186.4"

//go:embed peers/opcua_server.js
var opcuaServerScript []byte

// NodeModules installs node-opcua with npm into _output/npm once and
// returns the node_modules directory.
func NodeModules(t testing.TB) string {
	t.Helper()
	lookPath(t, "node", "nodejs")
	npm := lookPath(t, "npm", "nodejs (npm)")
	dir := outputDir(t, "npm")
	mods := filepath.Join(dir, "node_modules")
	marker := filepath.Join(dir, ".node-opcua-"+NodeOPCUAVersion)
	unlock := lockFile(t, filepath.Join(dir, ".lock"))
	defer unlock()
	if _, err := os.Stat(marker); err == nil {
		return mods
	}
	if _, err := os.Stat(filepath.Join(dir, "package.json")); err != nil {
		if err := os.WriteFile(filepath.Join(dir, "package.json"), []byte(`{"name":"kubeedge-go-test-peers","private":true}`+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(npm, "install", "--no-audit", "--no-fund", "node-opcua@"+NodeOPCUAVersion)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	testenv.Require(t, err == nil, fmt.Sprintf("npm install node-opcua@%s failed (needs the npm registry): %v\n%s", NodeOPCUAVersion, err, out))
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return mods
}

// OPCUAServer is a node-opcua server on 127.0.0.1.
type OPCUAServer struct {
	*Process
	Port int
	// PKI is the server's PKI directory, kept across restarts so a
	// restarted server has the same certificate.
	PKI    string
	script string
	mods   string
	t      testing.TB
}

// URL is the server's endpoint URL.
func (s *OPCUAServer) URL() string { return fmt.Sprintf("opc.tcp://127.0.0.1:%d/", s.Port) }

// StartOPCUA starts the node-opcua peer on a free port with its PKI in a
// new directory.
func StartOPCUA(t testing.TB) *OPCUAServer {
	t.Helper()
	mods := NodeModules(t)
	dir := ShortDir(t)
	script := filepath.Join(dir, "opcua_server.js")
	if err := os.WriteFile(script, opcuaServerScript, 0o644); err != nil {
		t.Fatal(err)
	}
	s := &OPCUAServer{Port: FreePort(t), PKI: filepath.Join(dir, "pki"), script: script, mods: mods, t: t}
	s.Restart()
	return s
}

// Restart stops the server (if running) and starts it again on the same
// port, as a server that dropped every session.
func (s *OPCUAServer) Restart() {
	s.t.Helper()
	if s.Process != nil {
		s.Process.Stop()
	}
	// The first start creates the PKI (RSA keys), which takes a while on a
	// loaded machine.
	s.Process = start(s.t, "node-opcua server", []string{"NODE_PATH=" + s.mods}, "READY", 120*time.Second,
		"node", s.script, strconv.Itoa(s.Port), s.PKI)
}
