#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubectl
# at one pinned Kubernetes version from the Go module proxy, into
# _output/k8s/<version>/bin. A stamp keyed by the tools module's go.sum makes a
# second run a no-op.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

tools="${REPO_ROOT}/hack/tools/k8s"
stamp="${K8S_BIN}/.stamp"
want="$(sha256sum "${tools}/go.mod" "${tools}/go.sum" | sha256sum | cut -d' ' -f1)"
if [[ -f "${stamp}" && "$(cat "${stamp}")" == "${want}" ]]; then
  log "control plane ${K8S_VERSION} already built in ${K8S_BIN}"
  exit 0
fi

mkdir -p "${K8S_BIN}"
log "building the control plane ${K8S_VERSION} from the Go module proxy (first time: ~10 min on 2 cores)"
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${K8S_VERSION}"
ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=35"
ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=${K8S_VERSION}"
cd "${tools}"
log "downloading modules"
go mod download
start=$SECONDS
# One binary at a time so that progress is visible; the build cache is shared.
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  log "building ${b} ($((SECONDS - start)) s elapsed)"
  CGO_ENABLED=0 nice go build -trimpath -ldflags "${ldflags}" -o "${K8S_BIN}/${b}" "./cmd/${b}"
done
echo "${want}" > "${stamp}"
log "control plane built in $((SECONDS - start)) s: $(ls "${K8S_BIN}" | tr '\n' ' ')"
