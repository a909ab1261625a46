package edged

import (
	"context"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/edge/cri"
	"github.com/kubeedge-go/kubeedge/internal/store"
)

// Reporter receives what edged reports upstream. Calls must not block: the
// implementation coalesces per pod (a later status replaces an unsent one)
// and retries while the cloud is unreachable. edged never retries a call;
// it hands each status, event and termination over exactly once and owns
// none of the values afterwards.
type Reporter interface {
	// PodStatus is the pod's complete status as edged sees it, sent only
	// when it changed since the last call for this pod UID.
	PodStatus(namespace, name string, uid types.UID, status corev1.PodStatus)
	// Event is a Kubernetes event about a pod (InvolvedObject is the pod,
	// with its UID) or about the node. Repeated events carry Count > 1 and
	// the same Name.
	Event(ev *corev1.Event)
	// PodTerminated says that every container of the pod has stopped and
	// its sandbox is removed, after a deletion (deletionTimestamp set, or
	// the pod vanished from the store). The implementation sends the final
	// grace-0 delete to the API server, as the kubelet does; for a pod that
	// is already gone from the cloud that delete finds nothing.
	PodTerminated(namespace, name string, uid types.UID)
}

// TokenSource returns service-account tokens for projected
// serviceAccountToken volumes (the default kube-api-access-* volume). The
// implementation asks the cloud (TokenRequest) and may fail while it is
// unreachable; edged then keeps the token file it already has and retries
// later. An error for a pod without any token file yet fails the volume
// mount, with the error in a FailedMount event.
type TokenSource interface {
	Token(ctx context.Context, pod *corev1.Pod, serviceAccount string, audiences []string, expirationSeconds int64) (token string, expires time.Time, err error)
}

// Deps are what edged takes from edgecore.
type Deps struct {
	// Store holds the desired pods ("pod") and the configmaps and secrets
	// they use, as JSON of corev1 objects. edged only reads it.
	Store store.Store
	// Reporter receives statuses, events and terminations. Required.
	Reporter Reporter
	// Tokens serves projected service-account tokens. Nil fails such
	// volumes with a clear message.
	Tokens TokenSource
	// Runtime, if set, replaces dialling Config.RemoteRuntimeEndpoint
	// (tests use a fake).
	Runtime cri.Runtime
	Clock   clock.WithTicker
	Logger  *slog.Logger
}
