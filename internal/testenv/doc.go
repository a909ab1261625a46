// Package testenv starts real dependencies for integration tests and for the
// local development cluster: a Kubernetes control plane (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler) built from source
// by hack/build-k8s.sh, run as separate processes on 127.0.0.1; and a
// private containerd with its CRI plugin (StartContainerd, ContainerdForTest)
// on a CNI bridge of its own, with locally built pause and busybox images
// (BuildImages: no registry, no docker).
//
// Tests use the *ForTest helpers, which skip with a clear reason when a
// dependency is missing, unless KUBEEDGE_REQUIRE_ALL=1 (set in CI) turns the
// skip into a failure so that nothing silently skips there;
// KUBEEDGE_KEEP_TESTENV=1 keeps a failed test's control plane files (logs,
// kubeconfigs) for inspection. The dev CLI
// (hack/localcluster) uses StartControlPlane with Detach and StopDetached;
// hack/localcontainerd uses StartContainerd with Detach and
// StopContainerdDetached.
package testenv
