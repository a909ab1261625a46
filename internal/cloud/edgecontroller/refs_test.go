package edgecontroller

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/kubeedge-go/kubeedge/internal/wire"
)

func cmVolume(name string) corev1.Volume {
	return corev1.Volume{Name: "v-" + name, VolumeSource: corev1.VolumeSource{
		ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}}
}

func secretVolume(name string) corev1.Volume {
	return corev1.Volume{Name: "v-" + name, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: name}}}
}

func projected(sources ...corev1.VolumeProjection) corev1.Volume {
	return corev1.Volume{Name: "projected", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: sources}}}
}

func cmProjection(name string) corev1.VolumeProjection {
	return corev1.VolumeProjection{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}
}

func secretProjection(name string) corev1.VolumeProjection {
	return corev1.VolumeProjection{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}
}

func envCM(name string) corev1.EnvVar {
	return corev1.EnvVar{Name: "E", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: "k"}}}
}

func envSecret(name string) corev1.EnvVar {
	return corev1.EnvVar{Name: "E", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: "k"}}}
}

func envFromCM(name string) corev1.EnvFromSource {
	return corev1.EnvFromSource{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}
}

func envFromSecret(name string) corev1.EnvFromSource {
	return corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}
}

func TestRefNames(t *testing.T) {
	tests := []struct {
		name                string
		spec                corev1.PodSpec
		configMaps, secrets []string
	}{
		{name: "nothing", spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Env: []corev1.EnvVar{{Name: "A", Value: "plain"}}}}}},
		{name: "configmap volume", spec: corev1.PodSpec{Volumes: []corev1.Volume{cmVolume("cm")}}, configMaps: []string{"cm"}},
		{name: "secret volume", spec: corev1.PodSpec{Volumes: []corev1.Volume{secretVolume("s")}}, secrets: []string{"s"}},
		{name: "projected volume", spec: corev1.PodSpec{Volumes: []corev1.Volume{projected(
			cmProjection("cm1"), secretProjection("s1"),
			corev1.VolumeProjection{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}},
			corev1.VolumeProjection{DownwardAPI: &corev1.DownwardAPIProjection{}},
			cmProjection("cm2"), secretProjection("s2"),
		)}}, configMaps: []string{"cm1", "cm2"}, secrets: []string{"s1", "s2"}},
		{name: "other volume kinds", spec: corev1.PodSpec{Volumes: []corev1.Volume{
			{Name: "e", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			{Name: "h", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/x"}}},
		}}},
		{name: "env valueFrom", spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Env: []corev1.EnvVar{
			envCM("cm"), envSecret("s"),
			{Name: "F", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		}}}}, configMaps: []string{"cm"}, secrets: []string{"s"}},
		{name: "envFrom", spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", EnvFrom: []corev1.EnvFromSource{
			envFromCM("cm"), envFromSecret("s"),
		}}}}, configMaps: []string{"cm"}, secrets: []string{"s"}},
		{name: "init containers", spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: "i",
			Env: []corev1.EnvVar{envCM("init-cm")}, EnvFrom: []corev1.EnvFromSource{envFromSecret("init-s")}}}},
			configMaps: []string{"init-cm"}, secrets: []string{"init-s"}},
		{name: "ephemeral containers", spec: corev1.PodSpec{EphemeralContainers: []corev1.EphemeralContainer{{
			EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug",
				Env: []corev1.EnvVar{envSecret("debug-s")}, EnvFrom: []corev1.EnvFromSource{envFromCM("debug-cm")}}}}},
			configMaps: []string{"debug-cm"}, secrets: []string{"debug-s"}},
		{name: "image pull secrets are secrets only", spec: corev1.PodSpec{ImagePullSecrets: []corev1.LocalObjectReference{{Name: "pull"}, {Name: ""}}},
			secrets: []string{"pull"}},
		{name: "empty names are ignored", spec: corev1.PodSpec{
			Volumes:    []corev1.Volume{cmVolume(""), secretVolume("")},
			Containers: []corev1.Container{{Name: "c", Env: []corev1.EnvVar{envCM("")}, EnvFrom: []corev1.EnvFromSource{envFromSecret("")}}},
		}},
		{name: "duplicates once, in order of first use", spec: corev1.PodSpec{
			Volumes:        []corev1.Volume{cmVolume("b"), secretVolume("y"), projected(cmProjection("a"), cmProjection("b"), secretProjection("x"))},
			InitContainers: []corev1.Container{{Name: "i", Env: []corev1.EnvVar{envCM("c"), envSecret("y")}}},
			Containers: []corev1.Container{
				{Name: "c1", EnvFrom: []corev1.EnvFromSource{envFromCM("a"), envFromSecret("z")}},
				{Name: "c2", Env: []corev1.EnvVar{envCM("b"), envCM("d")}},
			},
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: "x"}, {Name: "pull"}},
		}, configMaps: []string{"b", "a", "c", "d"}, secrets: []string{"y", "x", "z", "pull"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &corev1.Pod{Spec: tc.spec}
			p.Namespace = "ns"
			if diff := cmp.Diff(tc.configMaps, refNames(p, wire.TypeConfigMap)); diff != "" {
				t.Errorf("configmaps (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.secrets, refNames(p, wire.TypeSecret)); diff != "" {
				t.Errorf("secrets (-want +got):\n%s", diff)
			}
			if got := refNames(p, wire.TypePod); len(got) != 0 {
				t.Errorf("refNames(pod) = %v, want nothing for a type pods do not reference", got)
			}
			var wantKeys []string
			for _, n := range tc.secrets {
				wantKeys = append(wantKeys, "ns/"+n)
			}
			if diff := cmp.Diff(wantKeys, refKeys(p, wire.TypeSecret)); diff != "" {
				t.Errorf("refKeys(secret) (-want +got):\n%s", diff)
			}
		})
	}
}
