package upstream

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMergeStatus(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	t1 := metav1.NewTime(t0.Add(time.Minute))
	current := corev1.PodStatus{
		Phase:             corev1.PodPending,
		NominatedNodeName: "n",
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: t0},
			{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady", LastTransitionTime: t0},
			{Type: "example.com/gate", Status: corev1.ConditionTrue, LastTransitionTime: t0},
		},
	}
	reported := corev1.PodStatus{
		Phase: corev1.PodRunning,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: t1},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: t1},
		},
	}
	got := MergeStatus(current, reported)
	want := corev1.PodStatus{
		Phase:             corev1.PodRunning,
		NominatedNodeName: "n",
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: t1},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: t1},
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: t0},
			{Type: "example.com/gate", Status: corev1.ConditionTrue, LastTransitionTime: t0},
		},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("merge (-want +got):\n%s", d)
	}

	// An unchanged condition keeps the server's timestamps: no spurious write.
	again := MergeStatus(got, corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
		{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(t1.Add(time.Hour))},
	}})
	if c := findCondition(again.Conditions, corev1.PodReady); c == nil || !c.LastTransitionTime.Equal(&t1) {
		t.Errorf("unchanged Ready condition got a new transition time: %+v", c)
	}
}
