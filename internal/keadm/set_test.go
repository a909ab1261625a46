package keadm

import (
	"strings"
	"testing"

	edgeconfig "github.com/kubeedge-go/kubeedge/internal/edge/config"
)

func TestApplySets(t *testing.T) {
	c := edgeconfig.Default("n")
	err := applySets(c, []string{
		"modules.edged.cgroupRoot=/kubeedge-local",
		"modules.edgeHub.heartbeat=5",
		"modules.metaManager.metaServer.enable=false",
		"modules.edged.clusterDNS=10.96.0.10;10.96.0.11",
		"modules.edged.nodeLabels.zone=a",
	})
	if err != nil {
		t.Fatal(err)
	}
	ed := c.Modules.Edged
	if ed.CgroupRoot != "/kubeedge-local" || c.Modules.EdgeHub.Heartbeat != 5 || c.Modules.MetaManager.MetaServer.Enable ||
		strings.Join(ed.ClusterDNS, ",") != "10.96.0.10,10.96.0.11" || ed.NodeLabels["zone"] != "a" {
		t.Fatalf("not applied: %+v heartbeat %d", ed, c.Modules.EdgeHub.Heartbeat)
	}
	for set, want := range map[string]string{
		"modules.edged.nope=1":            `no field "nope"`,
		"modules.edgeHub.heartbeat=often": "not a whole number",
		"modules.edged.enable=maybe":      "not true or false",
		"modules.edged=1":                 "is a section",
		"nokey":                           "want key=value",
		"modules.edgeHub.websocket.x.y=1": `no field "x"`,
	} {
		before := *c
		err := applySets(c, []string{set})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--set %s: %v, want %q", set, err, want)
		}
		if c.Modules.Edged.CgroupRoot != before.Modules.Edged.CgroupRoot {
			t.Errorf("--set %s changed the config despite the error", set)
		}
	}
}
