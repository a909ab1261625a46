// Package keadm is the keadm command line: gettoken on the cloud side, join
// and reset on an edge node, crds install and version. Command and flag names
// follow KubeEdge's keadm so that scripts and habits carry over.
//
// join does its work in the foreground and in order (write the edgecore
// configuration, fetch the node certificate, start edgecore detached, wait
// until it reports "connected to cloud"), so every failure is reported by the
// step that caused it, with the cloud's own message where there is one. It
// does not install systemd units or download binaries: edgecore is taken from
// next to keadm or from PATH.
package keadm
