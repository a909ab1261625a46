package edged

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// errConfig marks errors in a pod's configuration that only a change of
// the pod or of an object it references can fix (a missing configmap key,
// an unsupported field path). Containers report them as
// CreateContainerConfigError.
var errConfig = errors.New("edged: invalid container configuration")

func configErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errConfig, fmt.Sprintf(format, a...))
}

// objectSource reads the configmaps and secrets a pod references; both
// return an error wrapping store.ErrNotFound when the object is absent.
type objectSource interface {
	configMap(namespace, name string) (*corev1.ConfigMap, error)
	secret(namespace, name string) (*corev1.Secret, error)
}

// podIPs is what the downward API knows about addresses.
type podAddrs struct {
	podIPs  []string
	hostIPs []string
}

// envVar is one resolved variable.
type envVar struct{ name, value string }

// makeEnv resolves a container's environment like the kubelet: envFrom
// sources first (later ones win, env entries win over all of them), then
// env entries in order, each value expanded with $(VAR) against the
// variables defined before it.
func makeEnv(pod *corev1.Pod, c *corev1.Container, addrs podAddrs, src objectSource) ([]envVar, error) {
	vals := map[string]string{}
	var order []string
	set := func(name, value string) {
		if _, ok := vals[name]; !ok {
			order = append(order, name)
		}
		vals[name] = value
	}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			optional := ef.ConfigMapRef.Optional != nil && *ef.ConfigMapRef.Optional
			cm, err := src.configMap(pod.Namespace, ef.ConfigMapRef.Name)
			if err != nil {
				if optional && isNotFound(err) {
					continue
				}
				return nil, refErr("configmap", ef.ConfigMapRef.Name, err)
			}
			for _, k := range sortedKeys(cm.Data) {
				if validEnvName(ef.Prefix + k) {
					set(ef.Prefix+k, cm.Data[k])
				}
			}
		case ef.SecretRef != nil:
			optional := ef.SecretRef.Optional != nil && *ef.SecretRef.Optional
			s, err := src.secret(pod.Namespace, ef.SecretRef.Name)
			if err != nil {
				if optional && isNotFound(err) {
					continue
				}
				return nil, refErr("secret", ef.SecretRef.Name, err)
			}
			for _, k := range sortedKeys(s.Data) {
				if validEnvName(ef.Prefix + k) {
					set(ef.Prefix+k, string(s.Data[k]))
				}
			}
		}
	}
	lookup := func(n string) (string, bool) { v, ok := vals[n]; return v, ok }
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, expand(e.Value, lookup))
			continue
		}
		v, skip, err := envValueFrom(pod, c, addrs, src, e)
		if err != nil {
			return nil, err
		}
		if !skip {
			set(e.Name, v)
		}
	}
	out := make([]envVar, 0, len(order))
	for _, n := range order {
		out = append(out, envVar{n, vals[n]})
	}
	return out, nil
}

func refErr(typ, name string, err error) error {
	if isNotFound(err) {
		return configErr("%s %q not found", typ, name)
	}
	return fmt.Errorf("read %s %q: %w", typ, name, err)
}

// envValueFrom resolves one valueFrom; skip is true for an optional
// reference that does not resolve.
func envValueFrom(pod *corev1.Pod, c *corev1.Container, addrs podAddrs, src objectSource, e corev1.EnvVar) (string, bool, error) {
	vf := e.ValueFrom
	switch {
	case vf.FieldRef != nil:
		v, err := podFieldValue(pod, addrs, vf.FieldRef.FieldPath)
		return v, false, err
	case vf.ResourceFieldRef != nil:
		v, err := resourceFieldValue(pod, c, vf.ResourceFieldRef)
		return v, false, err
	case vf.ConfigMapKeyRef != nil:
		ref := vf.ConfigMapKeyRef
		optional := ref.Optional != nil && *ref.Optional
		cm, err := src.configMap(pod.Namespace, ref.Name)
		if err != nil {
			if optional && isNotFound(err) {
				return "", true, nil
			}
			return "", false, refErr("configmap", ref.Name, err)
		}
		v, ok := cm.Data[ref.Key]
		if !ok {
			if b, ok := cm.BinaryData[ref.Key]; ok {
				return string(b), false, nil
			}
			if optional {
				return "", true, nil
			}
			return "", false, configErr("couldn't find key %s in ConfigMap %s/%s", ref.Key, pod.Namespace, ref.Name)
		}
		return v, false, nil
	case vf.SecretKeyRef != nil:
		ref := vf.SecretKeyRef
		optional := ref.Optional != nil && *ref.Optional
		s, err := src.secret(pod.Namespace, ref.Name)
		if err != nil {
			if optional && isNotFound(err) {
				return "", true, nil
			}
			return "", false, refErr("secret", ref.Name, err)
		}
		v, ok := s.Data[ref.Key]
		if !ok {
			if sv, ok := s.StringData[ref.Key]; ok {
				return sv, false, nil
			}
			if optional {
				return "", true, nil
			}
			return "", false, configErr("couldn't find key %s in Secret %s/%s", ref.Key, pod.Namespace, ref.Name)
		}
		return string(v), false, nil
	}
	return "", false, configErr("env %s: valueFrom has no supported source", e.Name)
}

// podFieldValue implements the downward API's fieldRef paths.
func podFieldValue(pod *corev1.Pod, addrs podAddrs, path string) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP":
		if len(addrs.podIPs) > 0 {
			return addrs.podIPs[0], nil
		}
		return "", nil
	case "status.podIPs":
		return strings.Join(addrs.podIPs, ","), nil
	case "status.hostIP":
		if len(addrs.hostIPs) > 0 {
			return addrs.hostIPs[0], nil
		}
		return "", nil
	case "status.hostIPs":
		return strings.Join(addrs.hostIPs, ","), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	}
	for _, p := range []struct {
		prefix string
		m      map[string]string
	}{{"metadata.labels['", pod.Labels}, {"metadata.annotations['", pod.Annotations}} {
		if strings.HasPrefix(path, p.prefix) && strings.HasSuffix(path, "']") {
			return p.m[strings.TrimSuffix(strings.TrimPrefix(path, p.prefix), "']")], nil
		}
	}
	return "", configErr("fieldRef %q is not supported", path)
}

// formatMap renders labels or annotations as the downward API file does:
// key="value" lines in key order, values quoted.
func formatMap(m map[string]string) string {
	var b strings.Builder
	for _, k := range sortedKeys(m) {
		fmt.Fprintf(&b, "%s=%q\n", k, m[k])
	}
	return b.String()
}

// resourceFieldValue implements resourceFieldRef: a container's requests
// or limits in units of the divisor, rounded up; a limit that is not set is
// the node's capacity, as the kubelet reports allocatable.
func resourceFieldValue(pod *corev1.Pod, c *corev1.Container, ref *corev1.ResourceFieldSelector) (string, error) {
	target := c
	if ref.ContainerName != "" && ref.ContainerName != c.Name {
		target = nil
		for _, oc := range allContainers(pod) {
			if oc.Name == ref.ContainerName {
				target = &oc
				break
			}
		}
		if target == nil {
			return "", configErr("resourceFieldRef: no container %q", ref.ContainerName)
		}
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	var q resource.Quantity
	var ok bool
	switch ref.Resource {
	case "limits.cpu":
		if q, ok = target.Resources.Limits[corev1.ResourceCPU]; !ok {
			q = *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI)
		}
	case "requests.cpu":
		q = target.Resources.Requests[corev1.ResourceCPU]
	case "limits.memory":
		if q, ok = target.Resources.Limits[corev1.ResourceMemory]; !ok {
			q = *resource.NewQuantity(nodeMemory(), resource.BinarySI)
		}
	case "requests.memory":
		q = target.Resources.Requests[corev1.ResourceMemory]
	case "limits.ephemeral-storage":
		q = target.Resources.Limits[corev1.ResourceEphemeralStorage]
	case "requests.ephemeral-storage":
		q = target.Resources.Requests[corev1.ResourceEphemeralStorage]
	default:
		return "", configErr("resourceFieldRef %q is not supported", ref.Resource)
	}
	if strings.HasSuffix(ref.Resource, ".cpu") {
		return fmt.Sprint(int64(math.Ceil(float64(q.MilliValue()) / float64(divisor.MilliValue())))), nil
	}
	return fmt.Sprint(int64(math.Ceil(float64(q.Value()) / float64(divisor.Value())))), nil
}

func nodeMemory() int64 {
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit)
}

// validEnvName accepts what current Kubernetes accepts for names from
// envFrom: printable ASCII without '='.
func validEnvName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		if n[i] < 32 || n[i] > 126 || n[i] == '=' {
			return false
		}
	}
	return true
}
