package kubeletserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubeedge-go/kubeedge/internal/edge/cri"
)

// serveLogs is /containerLogs/{ns}/{pod}/{container}: the container's CRI
// log file (found through ContainerStatus.LogPath) rendered as the kubelet
// does.
func (s *Server) serveLogs(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	opts, err := ParseLogOptions(r.URL.Query(), s.deps.Clock.Now())
	if err != nil {
		s.httpError(w, r, badRequest("%v", err))
		return
	}
	ns, pod, name := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container")
	c, err := s.findContainer(ctx, ns, pod, "", name, opts.Previous)
	if errors.Is(err, errNotFound) {
		// 400 as the kubelet answers log errors: the apiserver shows a
		// 400's text to the user but replaces a 404's with its own.
		s.httpError(w, r, fmt.Errorf("%w: %w", errBadRequest, err))
		return
	}
	if err != nil {
		s.httpError(w, r, err)
		return
	}
	st, err := s.deps.Runtime.ContainerStatus(ctx, c.Id)
	if err != nil {
		s.httpError(w, r, err)
		return
	}
	if st.LogPath == "" {
		s.httpError(w, r, badRequest("container %q in pod %s/%s has no log path", name, ns, pod))
		return
	}
	// The previous instance has exited: nothing to follow.
	if opts.Previous || st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		opts.Follow = false
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	flusher, _ := w.(http.Flusher)
	flush := func() {
		if flusher != nil {
			flusher.Flush()
		}
	}
	id := c.Id
	cw := &countingWriter{w: w}
	err = copyLogs(ctx, st.LogPath, opts, cw, flush, logFollower{
		clock: s.deps.Clock, poll: s.cfg.LogPollInterval,
		running: func(ctx context.Context) (bool, error) {
			st, err := s.deps.Runtime.ContainerStatus(ctx, id)
			switch {
			case errors.Is(err, cri.ErrUnavailable):
				return true, nil // the runtime restarts; containers keep running
			case errors.Is(err, cri.ErrNotFound):
				return false, nil
			case err != nil:
				return false, err
			}
			return st.State == runtimeapi.ContainerState_CONTAINER_RUNNING, nil
		},
	})
	switch {
	case err == nil || ctx.Err() != nil:
	case cw.n == 0:
		s.httpError(w, r, err)
	default: // the status line is out already
		s.log.Warn("log stream ended with an error", "pod", ns+"/"+pod, "container", name, "err", err)
	}
}

type countingWriter struct {
	w http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
