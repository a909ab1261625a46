#!/usr/bin/env bash
# Starts the local control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler) detached, on 127.0.0.1 (apiserver :6443, etcd :12379), with
# its files in _output/local/cluster. Builds the binaries first if needed.
# Does nothing if it is already running. Stop it with hack/cluster-down.sh.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

bash "${REPO_ROOT}/hack/build-k8s.sh"
cd "${REPO_ROOT}"
mkdir -p "${BIN}"
go build -o "${BIN}/localcluster" ./hack/localcluster
"${BIN}/localcluster" up --dir "${OUTPUT}/local/cluster" --bin-dir "${K8S_BIN}"
