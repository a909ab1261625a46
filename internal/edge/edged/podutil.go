package edged

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// podKey is the store key of a pod.
type podKey struct{ namespace, name string }

func (k podKey) String() string { return k.namespace + "/" + k.name }

func keyOf(pod *corev1.Pod) podKey { return podKey{pod.Namespace, pod.Name} }

// objRef is a configmap or secret a pod uses.
type objRef struct{ typ, namespace, name string }

// podFullName is how the kubelet names a pod in messages: name_ns(uid).
func podFullName(pod *corev1.Pod) string {
	return fmt.Sprintf("%s_%s(%s)", pod.Name, pod.Namespace, pod.UID)
}

// references returns the configmaps and secrets a pod reads (volumes, env,
// envFrom, image pull secrets), so that a change to one re-syncs the pod.
func references(pod *corev1.Pod) []objRef {
	seen := map[objRef]bool{}
	var out []objRef
	add := func(typ, name string) {
		r := objRef{typ, pod.Namespace, name}
		if name != "" && !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.ConfigMap != nil:
			add("configmap", v.ConfigMap.Name)
		case v.Secret != nil:
			add("secret", v.Secret.SecretName)
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				if s.ConfigMap != nil {
					add("configmap", s.ConfigMap.Name)
				}
				if s.Secret != nil {
					add("secret", s.Secret.Name)
				}
			}
		}
	}
	for _, c := range allContainers(pod) {
		for _, e := range c.EnvFrom {
			if e.ConfigMapRef != nil {
				add("configmap", e.ConfigMapRef.Name)
			}
			if e.SecretRef != nil {
				add("secret", e.SecretRef.Name)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if e.ValueFrom.ConfigMapKeyRef != nil {
				add("configmap", e.ValueFrom.ConfigMapKeyRef.Name)
			}
			if e.ValueFrom.SecretKeyRef != nil {
				add("secret", e.ValueFrom.SecretKeyRef.Name)
			}
		}
	}
	for _, s := range pod.Spec.ImagePullSecrets {
		add("secret", s.Name)
	}
	return out
}

// allContainers returns init containers then containers.
func allContainers(pod *corev1.Pod) []corev1.Container {
	out := make([]corev1.Container, 0, len(pod.Spec.InitContainers)+len(pod.Spec.Containers))
	out = append(out, pod.Spec.InitContainers...)
	return append(out, pod.Spec.Containers...)
}

// qosClass computes the pod's QoS class as the API server does: Guaranteed
// when every container has cpu and memory limits equal to its requests
// (requests default to limits), BestEffort when no container has any,
// Burstable otherwise.
func qosClass(pod *corev1.Pod) corev1.PodQOSClass {
	if pod.Status.QOSClass != "" {
		return pod.Status.QOSClass
	}
	any, guaranteed := false, true
	for _, c := range allContainers(pod) {
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, hasReq := c.Resources.Requests[name]
			lim, hasLim := c.Resources.Limits[name]
			if hasReq && !req.IsZero() || hasLim && !lim.IsZero() {
				any = true
			}
			if !hasLim || lim.IsZero() {
				guaranteed = false
				continue
			}
			if hasReq && req.Cmp(lim) != 0 {
				guaranteed = false
			}
		}
	}
	switch {
	case !any:
		return corev1.PodQOSBestEffort
	case guaranteed:
		return corev1.PodQOSGuaranteed
	default:
		return corev1.PodQOSBurstable
	}
}

// pullPolicy is the container's policy, defaulted as the API server does
// (pods from the cloud are already defaulted; locally written ones may not
// be): no tag or ":latest" means Always, anything else IfNotPresent.
func pullPolicy(c *corev1.Container) corev1.PullPolicy {
	if c.ImagePullPolicy != "" {
		return c.ImagePullPolicy
	}
	img := c.Image
	if strings.Contains(img, "@") {
		return corev1.PullIfNotPresent
	}
	tag := ""
	if i := strings.LastIndexByte(img, ':'); i > strings.LastIndexByte(img, '/') {
		tag = img[i+1:]
	}
	if tag == "" || tag == "latest" {
		return corev1.PullAlways
	}
	return corev1.PullIfNotPresent
}

// restartPolicy defaults to Always.
func restartPolicy(pod *corev1.Pod) corev1.RestartPolicy {
	if pod.Spec.RestartPolicy == "" {
		return corev1.RestartPolicyAlways
	}
	return pod.Spec.RestartPolicy
}

// gracePeriod is how long the pod's containers get between SIGTERM and
// SIGKILL: the deletion's grace period if it is being deleted, else the
// spec's, else 30 s.
func gracePeriod(pod *corev1.Pod) int64 {
	if pod.DeletionTimestamp != nil && pod.DeletionGracePeriodSeconds != nil {
		return max(*pod.DeletionGracePeriodSeconds, 0)
	}
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return max(*pod.Spec.TerminationGracePeriodSeconds, 0)
	}
	return 30
}

// milliValue returns q in thousandths, 0 for a missing quantity.
func milliValue(rl corev1.ResourceList, name corev1.ResourceName) int64 {
	q, ok := rl[name]
	if !ok {
		return 0
	}
	return q.MilliValue()
}
