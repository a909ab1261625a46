package edgecontroller

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// refNames lists the configmaps or secrets (by typ) that pod p uses, in
// volumes, projected volumes, env and envFrom of every container (init and
// ephemeral ones too) and image pull secrets.
func refNames(p *corev1.Pod, typ wire.ResourceType) []string {
	seen := map[string]bool{}
	var out []string
	add := func(name string) {
		if name != "" && !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	for _, v := range p.Spec.Volumes {
		switch {
		case typ == wire.TypeConfigMap && v.ConfigMap != nil:
			add(v.ConfigMap.Name)
		case typ == wire.TypeSecret && v.Secret != nil:
			add(v.Secret.SecretName)
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				if typ == wire.TypeConfigMap && s.ConfigMap != nil {
					add(s.ConfigMap.Name)
				}
				if typ == wire.TypeSecret && s.Secret != nil {
					add(s.Secret.Name)
				}
			}
		}
	}
	containers := make([]corev1.Container, 0, len(p.Spec.InitContainers)+len(p.Spec.Containers)+len(p.Spec.EphemeralContainers))
	containers = append(containers, p.Spec.InitContainers...)
	containers = append(containers, p.Spec.Containers...)
	// Ephemeral (debug) containers read env like the others, as the kubelet's
	// own secret and configmap managers count them.
	for _, e := range p.Spec.EphemeralContainers {
		containers = append(containers, corev1.Container(e.EphemeralContainerCommon))
	}
	for _, c := range containers {
		for _, e := range c.EnvFrom {
			if typ == wire.TypeConfigMap && e.ConfigMapRef != nil {
				add(e.ConfigMapRef.Name)
			}
			if typ == wire.TypeSecret && e.SecretRef != nil {
				add(e.SecretRef.Name)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if typ == wire.TypeConfigMap && e.ValueFrom.ConfigMapKeyRef != nil {
				add(e.ValueFrom.ConfigMapKeyRef.Name)
			}
			if typ == wire.TypeSecret && e.ValueFrom.SecretKeyRef != nil {
				add(e.ValueFrom.SecretKeyRef.Name)
			}
		}
	}
	if typ == wire.TypeSecret {
		for _, s := range p.Spec.ImagePullSecrets {
			add(s.Name)
		}
	}
	return out
}

// refKeys is refNames as "namespace/name" index keys.
func refKeys(p *corev1.Pod, typ wire.ResourceType) []string {
	names := refNames(p, typ)
	for i, n := range names {
		names[i] = p.Namespace + "/" + n
	}
	return names
}
