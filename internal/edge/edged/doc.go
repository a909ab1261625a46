// Package edged is edgecore's lightweight kubelet: it runs the pods bound to
// this node on a CRI runtime (containerd) from the objects MetaManager keeps
// in the edge store, so that pods come back after a reboot with the cloud
// unreachable.
//
// Desired state is the store ("pod" objects whose spec.nodeName is this
// node, and the configmaps and secrets they use); Notify only marks keys
// dirty and every sync re-reads the store and the runtime (level-triggered).
// Each pod UID has one worker goroutine that owns every runtime action for
// it; a relist of the runtime every second (PLEG), probe results and
// back-off timers wake it. Workers build the sandbox (pod network through
// the runtime's CNI, or the host network), run init containers in order and
// then the containers with the kubelet's restart policies and back-off, set
// up volumes (configMap, secret, emptyDir, hostPath, projected with
// service-account tokens, downwardAPI) with the kubelet's atomic "..data"
// layout, run probes, and report the pod status whenever it changes.
// Deleted pods are stopped with their grace period and reported through
// Reporter.PodTerminated once their sandbox is gone. Housekeeping removes
// orphaned sandboxes, pod directories, cgroups and log directories, and
// garbage-collects dead containers and unused images.
//
// docs/edged.md describes what is supported, the directory and cgroup
// layout, and the offline behaviour.
package edged
