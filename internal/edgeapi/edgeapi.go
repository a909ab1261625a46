// Package edgeapi holds the typed contents of the messages that edge and
// cloud exchange about pods, so that both ends decode the same Go types and
// nothing past the hub handles raw maps. Field names follow KubeEdge where
// it has the same message.
package edgeapi

import (
	"encoding/json"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// PodStatusRequest is the content of an "update" on "{ns}/podstatus/{name}":
// the status the edge observed for one pod. KubeEdge's struct of the same
// name has no JSON tags, hence the capitalised keys.
type PodStatusRequest struct {
	UID    types.UID        `json:"UID"`
	Name   string           `json:"Name"`
	Status corev1.PodStatus `json:"Status"`
}

// Validate checks that r names a pod; name is the name in the route.
func (r PodStatusRequest) Validate(name string) error {
	switch {
	case r.UID == "":
		return errors.New("podstatus: UID is empty")
	case r.Name != name:
		return fmt.Errorf("podstatus: content names pod %q but the route names %q", r.Name, name)
	}
	return nil
}

// PodDeletion is the content of a "delete" on "{ns}/pod/{name}" sent by the
// edge: every container of the pod has stopped and its sandbox is gone, so
// the cloud may remove the object (the kubelet's grace-period-0 delete).
// UID guards against deleting a newer pod of the same name.
type PodDeletion struct {
	UID types.UID `json:"uid"`
}

// Validate checks that d names a pod instance.
func (d PodDeletion) Validate() error {
	if d.UID == "" {
		return errors.New("pod deletion: uid is empty")
	}
	return nil
}

// DecodePodStatusRequest decodes and validates the content of a podstatus
// update whose route names pod name.
func DecodePodStatusRequest(content []byte, name string) (PodStatusRequest, error) {
	var r PodStatusRequest
	if err := json.Unmarshal(content, &r); err != nil {
		return PodStatusRequest{}, fmt.Errorf("podstatus: content is not a PodStatusRequest: %w", err)
	}
	if err := r.Validate(name); err != nil {
		return PodStatusRequest{}, err
	}
	return r, nil
}

// DecodePodDeletion decodes and validates the content of a pod delete from
// the edge.
func DecodePodDeletion(content []byte) (PodDeletion, error) {
	var d PodDeletion
	if err := json.Unmarshal(content, &d); err != nil {
		return PodDeletion{}, fmt.Errorf("pod deletion: content is not a PodDeletion: %w", err)
	}
	if err := d.Validate(); err != nil {
		return PodDeletion{}, err
	}
	return d, nil
}
