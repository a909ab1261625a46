package nodes

import (
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// mergeStatus returns base with the parts of st the edge owns: capacity,
// allocatable, addresses, nodeInfo, daemonEndpoints and the conditions it reports. Empty
// parts of st leave base's. Fields others own (volumesAttached, conditions
// set by other controllers) are kept. Reported conditions get heartbeat
// now, and keep base's transition time when their status did not change.
func mergeStatus(base *corev1.Node, st corev1.NodeStatus, now time.Time) *corev1.Node {
	out := base.DeepCopy()
	s := &out.Status
	if len(st.Capacity) > 0 {
		s.Capacity = st.Capacity.DeepCopy()
	}
	if len(st.Allocatable) > 0 {
		s.Allocatable = st.Allocatable.DeepCopy()
	}
	if len(st.Addresses) > 0 {
		s.Addresses = slices.Clone(st.Addresses)
	}
	if st.NodeInfo != (corev1.NodeSystemInfo{}) {
		s.NodeInfo = st.NodeInfo
	}
	if st.Images != nil { // an edge without a runtime reports none: keep what is there
		s.Images = slices.Clone(st.Images)
	}
	if st.DaemonEndpoints.KubeletEndpoint.Port != 0 { // where CloudStream finds the node's kubelet
		s.DaemonEndpoints = st.DaemonEndpoints
	}
	t := metav1.NewTime(now)
	for _, c := range st.Conditions {
		c.LastHeartbeatTime = t
		c.LastTransitionTime = t
		i := slices.IndexFunc(s.Conditions, func(o corev1.NodeCondition) bool { return o.Type == c.Type })
		if i < 0 {
			s.Conditions = append(s.Conditions, c)
			continue
		}
		if s.Conditions[i].Status == c.Status {
			c.LastTransitionTime = s.Conditions[i].LastTransitionTime
		}
		s.Conditions[i] = c
	}
	return out
}

// statusEqual compares the parts of two statuses the edge owns, ignoring
// condition timestamps.
func statusEqual(a, b corev1.NodeStatus) bool {
	strip := func(s corev1.NodeStatus) corev1.NodeStatus {
		out := corev1.NodeStatus{Capacity: s.Capacity, Allocatable: s.Allocatable, Addresses: s.Addresses, NodeInfo: s.NodeInfo,
			Images: s.Images, DaemonEndpoints: s.DaemonEndpoints}
		for _, c := range s.Conditions {
			c.LastHeartbeatTime, c.LastTransitionTime = metav1.Time{}, metav1.Time{}
			out.Conditions = append(out.Conditions, c)
		}
		return out
	}
	return apiequality.Semantic.DeepEqual(strip(a), strip(b))
}
