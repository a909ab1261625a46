package edged

import (
	"fmt"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
)

// Event reasons, the kubelet's.
const (
	reasonPulling             = "Pulling"
	reasonPulled              = "Pulled"
	reasonFailed              = "Failed"
	reasonBackOff             = "BackOff"
	reasonCreated             = "Created"
	reasonStarted             = "Started"
	reasonKilling             = "Killing"
	reasonUnhealthy           = "Unhealthy"
	reasonFailedMount         = "FailedMount"
	reasonFailedSandbox       = "FailedCreatePodSandBox"
	reasonSandboxChanged      = "SandboxChanged"
	reasonErrImageNeverPull   = "ErrImageNeverPull"
	reasonFailedPostStartHook = "FailedPostStartHook"
	reasonFailedPreStopHook   = "FailedPreStopHook"
	reasonOutOfPods           = "OutOfpods"
	reasonInvalidSpec         = "FailedValidation"
)

// eventRecorder builds events and folds repeats of the same (object,
// reason, message) into one event with a growing Count, as the kubelet's
// correlator does, so that a crash-looping pod does not flood the cloud.
type eventRecorder struct {
	node     string
	clk      clock.Clock
	reporter Reporter

	mu       sync.Mutex
	seen     map[eventKey]*corev1.Event // guarded by mu
	lastName int64                      // guarded by mu; keeps names unique

}

type eventKey struct {
	uid, fieldPath, reason, message string
}

// maxEventKeys bounds the correlation memory; the oldest half is dropped
// when it is reached.
const maxEventKeys = 4096

func (r *eventRecorder) pod(pod *corev1.Pod, fieldPath, typ, reason, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	ref := corev1.ObjectReference{
		Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
		ResourceVersion: pod.ResourceVersion, FieldPath: fieldPath,
	}
	r.emit(ref, typ, reason, msg)
}

func (r *eventRecorder) emit(ref corev1.ObjectReference, typ, reason, msg string) {
	now := metav1.NewTime(r.clk.Now())
	key := eventKey{string(ref.UID), ref.FieldPath, reason, msg}
	r.mu.Lock()
	if r.seen == nil {
		r.seen = map[eventKey]*corev1.Event{}
	}
	ev, ok := r.seen[key]
	if ok {
		ev.Count++
		ev.LastTimestamp = now
	} else {
		if len(r.seen) >= maxEventKeys {
			r.pruneLocked()
		}
		// The kubelet's name: <object>.<hex nanoseconds>, made unique
		// when two events share a clock reading.
		n := max(now.UnixNano(), r.lastName+1)
		r.lastName = n
		ev = &corev1.Event{
			ObjectMeta: metav1.ObjectMeta{
				Name:      fmt.Sprintf("%s.%x", ref.Name, n),
				Namespace: ref.Namespace,
			},
			InvolvedObject:      ref,
			Reason:              reason,
			Message:             msg,
			Type:                typ,
			Source:              corev1.EventSource{Component: "kubelet", Host: r.node},
			FirstTimestamp:      now,
			LastTimestamp:       now,
			Count:               1,
			ReportingController: "kubelet",
			ReportingInstance:   r.node,
		}
		r.seen[key] = ev
	}
	out := ev.DeepCopy()
	r.mu.Unlock()
	r.reporter.Event(out)
}

func (r *eventRecorder) pruneLocked() {
	var oldest time.Time
	times := make([]time.Time, 0, len(r.seen))
	for _, ev := range r.seen {
		times = append(times, ev.LastTimestamp.Time)
	}
	// The median last-seen time splits the map in halves.
	oldest = medianTime(times)
	for k, ev := range r.seen {
		if !ev.LastTimestamp.After(oldest) {
			delete(r.seen, k)
		}
	}
}

func medianTime(ts []time.Time) time.Time {
	if len(ts) == 0 {
		return time.Time{}
	}
	sorted := append([]time.Time(nil), ts...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Before(sorted[j]) })
	return sorted[len(sorted)/2]
}

// forgetPod drops the correlation state of a pod.
func (r *eventRecorder) forgetPod(uid string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.seen {
		if k.uid == uid {
			delete(r.seen, k)
		}
	}
}

func containerFieldPath(c *corev1.Container, init bool) string {
	if init {
		return fmt.Sprintf("spec.initContainers{%s}", c.Name)
	}
	return fmt.Sprintf("spec.containers{%s}", c.Name)
}
