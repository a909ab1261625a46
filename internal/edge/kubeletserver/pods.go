package kubeletserver

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// servePods is /pods: edged's pods when Deps.Pods is set, else the pods the
// runtime knows (one per sandbox, with its containers' names, images and
// states), which is what monitoring agents read from it.
func (s *Server) servePods(w http.ResponseWriter, r *http.Request) {
	if s.deps.Pods != nil {
		b, err := s.deps.Pods(r.Context())
		if err != nil {
			s.httpError(w, r, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
		return
	}
	sbs, err := s.deps.Runtime.ListPodSandbox(r.Context(), nil)
	if err != nil {
		s.httpError(w, r, err)
		return
	}
	cs, err := s.deps.Runtime.ListContainers(r.Context(), nil)
	if err != nil {
		s.httpError(w, r, err)
		return
	}
	list := corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}, Items: []corev1.Pod{}}
	for _, sb := range sbs {
		ref := podRef(sb)
		p := corev1.Pod{
			TypeMeta:   metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{Name: ref.Name, Namespace: ref.Namespace, UID: types.UID(ref.UID), CreationTimestamp: metav1.NewTime(time.Unix(0, sb.CreatedAt))},
			Spec:       corev1.PodSpec{NodeName: s.cfg.NodeName},
			Status:     corev1.PodStatus{Phase: corev1.PodPending},
		}
		if sb.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			p.Status.Phase = corev1.PodRunning
		}
		for _, c := range cs {
			if c.PodSandboxId != sb.Id {
				continue
			}
			name := containerName(c)
			if !slices.ContainsFunc(p.Spec.Containers, func(x corev1.Container) bool { return x.Name == name }) {
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: name, Image: c.GetImage().GetImage()})
			}
			st := corev1.ContainerStatus{Name: name, Image: c.GetImage().GetImage(), ImageID: c.ImageRef,
				ContainerID: "containerd://" + c.Id, RestartCount: int32(c.GetMetadata().GetAttempt())}
			switch c.State {
			case runtimeapi.ContainerState_CONTAINER_RUNNING:
				st.Ready, st.State.Running = true, &corev1.ContainerStateRunning{}
			case runtimeapi.ContainerState_CONTAINER_EXITED:
				st.State.Terminated = &corev1.ContainerStateTerminated{}
			default:
				st.State.Waiting = &corev1.ContainerStateWaiting{}
			}
			p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, st)
		}
		list.Items = append(list.Items, p)
	}
	slices.SortFunc(list.Items, func(a, b corev1.Pod) int {
		return strings.Compare(a.Namespace+"/"+a.Name+"/"+string(a.UID), b.Namespace+"/"+b.Name+"/"+string(b.UID))
	})
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(list)
}
