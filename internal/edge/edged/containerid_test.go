package edged

import (
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestContainerFromStatus pins the kubelet's choice of instance for logs.
func TestContainerFromStatus(t *testing.T) {
	term := func(id string) *corev1.ContainerStateTerminated {
		return &corev1.ContainerStateTerminated{ContainerID: "containerd://" + id}
	}
	backOff := &corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "app",
		State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
		LastTerminationState: corev1.ContainerState{Terminated: term("c2")}}}}
	running := &corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "app", ContainerID: "containerd://c3",
		State:                corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		LastTerminationState: corev1.ContainerState{Terminated: term("c2")}}}}
	fresh := &corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "app",
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}}
	for _, tc := range []struct {
		name     string
		st       *corev1.PodStatus
		previous bool
		want     string
		wantErr  bool
		decided  bool
	}{
		{"back-off current is the last crash", backOff, false, "c2", false, true},
		{"back-off previous is the last crash", backOff, true, "c2", false, true},
		{"running current", running, false, "c3", false, true},
		{"running previous", running, true, "c2", false, true},
		{"never started", fresh, false, "", true, true},
		{"never started previous", fresh, true, "", true, true},
		{"no status", nil, false, "", false, false},
		{"unknown container", running, false, "", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "app"
			if tc.name == "unknown container" {
				name = "other"
			}
			id, err, decided := containerFromStatus(tc.st, "ns", "p", name, tc.previous)
			if id != tc.want || (err != nil) != tc.wantErr || decided != tc.decided {
				t.Fatalf("got %q, %v, %v", id, err, decided)
			}
			if err != nil && !errors.Is(err, ErrContainerNotFound) {
				t.Errorf("error %v does not wrap ErrContainerNotFound", err)
			}
		})
	}
}
