package edged

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Container waiting reasons, the kubelet's.
const (
	waitingContainerCreating  = "ContainerCreating"
	waitingPodInitializing    = "PodInitializing"
	waitingCrashLoopBackOff   = "CrashLoopBackOff"
	waitingErrImagePull       = "ErrImagePull"
	waitingImagePullBackOff   = "ImagePullBackOff"
	waitingErrImageNeverPull  = "ErrImageNeverPull"
	waitingInvalidImageName   = "InvalidImageName"
	waitingCreateConfigError  = "CreateContainerConfigError"
	waitingCreateError        = "CreateContainerError"
	waitingRunContainerError  = "RunContainerError"
	waitingPreStartHookError  = "PreStartHookError"
	waitingPostStartHookError = "PostStartHookError"
)

// startError is why a container could not be started: the waiting reason
// and message its status shows, and when to try again (0: next sync).
type startError struct {
	reason, message string
	retryAfter      time.Duration
}

func (e *startError) Error() string { return e.reason + ": " + e.message }

// ensureImage applies the container's pull policy and returns the image as
// the runtime has it. Pull failures back off per (pod, image) like the
// kubelet's. With policy Always and an unreachable registry, an image that
// is already on the node is used (with a warning event) instead of failing:
// an edge node must be able to restart its pods while offline.
func (e *Edged) ensureImage(ctx context.Context, pod *corev1.Pod, c *corev1.Container, fieldPath string, sbCfg *runtimeapi.PodSandboxConfig) (*runtimeapi.Image, error) {
	if c.Image == "" || strings.ContainsAny(c.Image, " \t\n") {
		e.events.pod(pod, fieldPath, corev1.EventTypeWarning, waitingInvalidImageName, "Failed to apply default image tag %q: invalid reference format", c.Image)
		return nil, &startError{reason: waitingInvalidImageName, message: fmt.Sprintf("Failed to apply default image tag %q: invalid reference format", c.Image)}
	}
	policy := pullPolicy(c)
	img, err := e.rt.ImageStatus(ctx, c.Image)
	if err != nil {
		return nil, &startError{reason: waitingErrImagePull, message: fmt.Sprintf("image status %q: %v", c.Image, err), retryAfter: time.Second}
	}
	present := img != nil
	switch policy {
	case corev1.PullNever:
		if !present {
			msg := fmt.Sprintf("Container image %q is not present with pull policy of Never", c.Image)
			e.events.pod(pod, fieldPath, corev1.EventTypeWarning, reasonErrImageNeverPull, "%s", msg)
			return nil, &startError{reason: waitingErrImageNeverPull, message: msg}
		}
		return img, nil
	case corev1.PullIfNotPresent:
		if present {
			e.events.pod(pod, fieldPath, corev1.EventTypeNormal, reasonPulled, "Container image %q already present on machine", c.Image)
			return img, nil
		}
	}
	key := string(pod.UID) + "/image/" + c.Image
	if in, left := e.pullBackoff.inBackoff(key, e.pullFailedAt(key)); in {
		msg := fmt.Sprintf("Back-off pulling image %q", c.Image)
		e.events.pod(pod, fieldPath, corev1.EventTypeNormal, reasonBackOff, "%s", msg)
		return nil, &startError{reason: waitingImagePullBackOff, message: msg, retryAfter: left}
	}
	e.events.pod(pod, fieldPath, corev1.EventTypeNormal, reasonPulling, "Pulling image %q", c.Image)
	start := e.clk.Now()
	auth := e.pullAuth(ctx, pod, c.Image)
	_, err = e.rt.PullImage(ctx, c.Image, auth, sbCfg)
	if err != nil {
		if present {
			e.events.pod(pod, fieldPath, corev1.EventTypeWarning, reasonFailed,
				"Failed to pull image %q: %v; using the copy already on this node", c.Image, err)
			return img, nil
		}
		now := e.clk.Now()
		e.setPullFailedAt(key, now)
		e.pullBackoff.next(key, now)
		e.events.pod(pod, fieldPath, corev1.EventTypeWarning, reasonFailed, "Failed to pull image %q: %v", c.Image, err)
		e.events.pod(pod, fieldPath, corev1.EventTypeWarning, reasonFailed, "Error: %s", waitingErrImagePull)
		return nil, &startError{reason: waitingErrImagePull, message: fmt.Sprintf("Failed to pull image %q: %v", c.Image, err), retryAfter: e.pullBackoff.delay(key)}
	}
	e.pullBackoff.reset(key)
	took := e.clk.Since(start)
	img, err = e.rt.ImageStatus(ctx, c.Image)
	if err != nil || img == nil {
		return nil, &startError{reason: waitingErrImagePull, message: fmt.Sprintf("image %q not found after a successful pull (%v)", c.Image, err), retryAfter: time.Second}
	}
	e.events.pod(pod, fieldPath, corev1.EventTypeNormal, reasonPulled, "Successfully pulled image %q in %s. Image size: %d bytes.", c.Image, took.Round(time.Millisecond), img.Size)
	return img, nil
}

func (e *Edged) pullFailedAt(key string) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.pullFailures[key]
}

func (e *Edged) setPullFailedAt(key string, t time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pullFailures[key] = t
}

// pullAuth finds credentials for image in the pod's imagePullSecrets.
func (e *Edged) pullAuth(ctx context.Context, pod *corev1.Pod, image string) *runtimeapi.AuthConfig {
	if len(pod.Spec.ImagePullSecrets) == 0 {
		return nil
	}
	host := imageRegistry(image)
	src := storeObjects{e: e, ctx: ctx}
	for _, ref := range pod.Spec.ImagePullSecrets {
		s, err := src.secret(pod.Namespace, ref.Name)
		if err != nil {
			e.log.Warn("image pull secret not readable", "pod", podFullName(pod), "secret", ref.Name, "err", err)
			continue
		}
		auths, err := parseDockerConfig(s)
		if err != nil {
			e.events.pod(pod, "", corev1.EventTypeWarning, reasonFailed, "image pull secret %q: %v", ref.Name, err)
			continue
		}
		if a, ok := auths[host]; ok {
			return a
		}
	}
	return nil
}

// imageRegistry returns the registry host of an image reference the way
// the container runtime's reference parser decides it: a first path
// element with a dot or colon, or "localhost", is a host; anything else
// is on Docker Hub.
func imageRegistry(image string) string {
	first, _, found := strings.Cut(image, "/")
	if !found || (!strings.ContainsAny(first, ".:") && first != "localhost") {
		return "docker.io"
	}
	return first
}

// parseDockerConfig reads a kubernetes.io/dockerconfigjson or dockercfg
// secret into credentials by registry host.
func parseDockerConfig(s *corev1.Secret) (map[string]*runtimeapi.AuthConfig, error) {
	type entry struct {
		Username      string `json:"username"`
		Password      string `json:"password"`
		Auth          string `json:"auth"`
		IdentityToken string `json:"identitytoken"`
		RegistryToken string `json:"registrytoken"`
	}
	var entries map[string]entry
	switch {
	case len(s.Data[corev1.DockerConfigJsonKey]) > 0:
		var cfg struct {
			Auths map[string]entry `json:"auths"`
		}
		if err := json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg); err != nil {
			return nil, fmt.Errorf("%s is not valid JSON: %w", corev1.DockerConfigJsonKey, err)
		}
		entries = cfg.Auths
	case len(s.Data[corev1.DockerConfigKey]) > 0:
		if err := json.Unmarshal(s.Data[corev1.DockerConfigKey], &entries); err != nil {
			return nil, fmt.Errorf("%s is not valid JSON: %w", corev1.DockerConfigKey, err)
		}
	default:
		return nil, errors.New("secret has neither .dockerconfigjson nor .dockercfg")
	}
	out := make(map[string]*runtimeapi.AuthConfig, len(entries))
	for reg, en := range entries {
		a := &runtimeapi.AuthConfig{Username: en.Username, Password: en.Password, Auth: en.Auth, IdentityToken: en.IdentityToken, RegistryToken: en.RegistryToken}
		if a.Username == "" && en.Auth != "" {
			if dec, err := base64.StdEncoding.DecodeString(en.Auth); err == nil {
				if u, p, ok := strings.Cut(string(dec), ":"); ok {
					a.Username, a.Password = u, p
				}
			}
		}
		host := reg
		host = strings.TrimPrefix(strings.TrimPrefix(host, "https://"), "http://")
		host, _, _ = strings.Cut(host, "/")
		switch host {
		case "index.docker.io", "registry-1.docker.io":
			host = "docker.io"
		}
		out[host] = a
	}
	return out, nil
}
