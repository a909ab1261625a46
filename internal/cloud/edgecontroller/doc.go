// Package edgecontroller decides what each edge node should hold: the pods
// bound to it and the configmaps and secrets those pods reference. It reads
// informer caches only, and tells delivery which (node, key) pairs may have
// changed; delivery asks it for the current object when it sends.
package edgecontroller
