// Package objectsync keeps the durable record of what each edge node
// acknowledged: one ObjectSync (namespaced objects, in the object's
// namespace) or ClusterObjectSync (cluster-scoped objects) per node and
// object, in the reliablesyncs.kubeedge.io/v1alpha1 CRDs that KubeEdge uses.
// A record is named "{nodeName}.{objectUID}", carries the object's
// apiVersion, kind and name in spec and the acknowledged resourceVersion in
// status, and is labelled with the node and the cloud–edge resource type
// (kind alone is ambiguous for our resource types).
//
// Store implements delivery.AckStore. Record and Forget never wait for the
// apiserver: they fold the newest desired state of each (node, key) into a
// pending map and queue the key; Run's workers write it with server-side
// apply and delete. Updates that arrive faster than the apiserver takes them
// coalesce, so one write lands per key no matter how many acks preceded it.
// A lost write (crash, shutdown) only makes a restarted cloudcore resend an
// object the edge already has, which delivery's at-least-once contract
// allows; for the same reason a record is deleted before its replacement is
// written, never after.
package objectsync
