package autonomy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

func TestRewrite(t *testing.T) {
	s300, s5 := int64(300), int64(5)
	in := []corev1.Toleration{
		{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &s300},
		{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &s300},
		{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Key: "example.com/other", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &s300},
	}
	forever := Rewrite(in, nil)
	want := []corev1.Toleration{
		{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
		{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
		in[2], in[3],
	}
	if d := cmp.Diff(want, forever); d != "" {
		t.Errorf("forever (-want +got):\n%s", d)
	}
	if *in[0].TolerationSeconds != 300 {
		t.Error("Rewrite changed its input")
	}
	five := Rewrite(in, &s5)
	if *five[0].TolerationSeconds != 5 || *five[1].TolerationSeconds != 5 || *five[3].TolerationSeconds != 300 {
		t.Errorf("rewrite to 5 s: %+v", five)
	}

	k := &Keeper{cfg: Config{}}
	pod := &corev1.Pod{Spec: corev1.PodSpec{Tolerations: in}}
	if !k.needsRewrite(pod) {
		t.Error("a pod with the admission default needs a rewrite")
	}
	if k.needsRewrite(&corev1.Pod{Spec: corev1.PodSpec{Tolerations: forever}}) {
		t.Error("a rewritten pod needs another rewrite")
	}
	pod.Annotations = map[string]string{AnnotationAllowEviction: "true"}
	if k.needsRewrite(pod) {
		t.Error("an opted-out pod was selected")
	}
}
