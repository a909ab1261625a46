package objectsync

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
)

// writer makes a Store's apiserver writes. dynamicWriter is the real one;
// tests substitute fakes to drive coalescing and retries, since the fake
// dynamic client cannot apply an object that does not exist yet.
type writer interface {
	// apply server-side applies obj (an ObjectSync or ClusterObjectSync),
	// taking every field it sets.
	apply(ctx context.Context, obj *unstructured.Unstructured) error
	// delete removes a record; namespace "" means a ClusterObjectSync. A
	// record that does not exist is not an error.
	delete(ctx context.Context, namespace, name string) error
}

type dynamicWriter struct{ dyn dynamic.Interface }

func (w dynamicWriter) resource(namespace string) dynamic.ResourceInterface {
	if namespace == "" {
		return w.dyn.Resource(ClusterObjectSyncResource)
	}
	return w.dyn.Resource(ObjectSyncResource).Namespace(namespace)
}

func (w dynamicWriter) apply(ctx context.Context, obj *unstructured.Unstructured) error {
	_, err := w.resource(obj.GetNamespace()).Apply(ctx, obj.GetName(), obj,
		metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
	return err
}

func (w dynamicWriter) delete(ctx context.Context, namespace, name string) error {
	err := w.resource(namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
