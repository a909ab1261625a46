#!/usr/bin/env bash
# `make up`: a local KubeEdge on this machine, from nothing.
#   1. prerequisites and the pinned Kubernetes control plane (built once, cached)
#   2. etcd + kube-apiserver + controller-manager + scheduler on 127.0.0.1
#   3. cloudcore (CloudHub :10000 websocket, :10001 quic, :10002 join)
#   4. keadm join: edge node "edge-node" gets its certificate and edgecore starts
#   5. waits until `kubectl get nodes` shows edge-node Ready
# Everything runs detached with its files under _output/local; `make down` stops it.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "${REPO_ROOT}"
LOCAL="${OUTPUT}/local"
KUBECONFIG_PATH="${LOCAL}/cluster/admin.kubeconfig"
EDGE_DIR="${LOCAL}/edge"
NODE="${EDGE_NODE_NAME:-edge-node}"
KUBECTL=("${K8S_BIN}/kubectl" --kubeconfig "${KUBECONFIG_PATH}")

log "[1/5] prerequisites, control plane binaries and project binaries"
bash hack/install-deps.sh
bash hack/build-k8s.sh
bash hack/build.sh

log "[2/5] control plane"
bash hack/cluster-up.sh

log "[3/5] cloudcore"
mkdir -p "${LOCAL}/cloud"
pidfile="${LOCAL}/cloud/cloudcore.pid"
if [[ -f "${pidfile}" ]] && kill -0 "$(cat "${pidfile}")" 2>/dev/null && grep -q cloudcore "/proc/$(cat "${pidfile}")/cmdline"; then
  log "cloudcore already running (pid $(cat "${pidfile}"))"
else
  "${BIN}/cloudcore" --defaultconfig \
    | sed -e "s#kubeConfig: .*#kubeConfig: ${KUBECONFIG_PATH}#" -e "s#address: 0.0.0.0#address: 127.0.0.1#" \
    > "${LOCAL}/cloud/cloudcore.yaml"
  ulimit -n "$(ulimit -Hn)"
  setsid "${BIN}/cloudcore" --config "${LOCAL}/cloud/cloudcore.yaml" ${CLOUDCORE_FLAGS:-} >> "${LOCAL}/cloud/cloudcore.log" 2>&1 < /dev/null &
  echo $! > "${pidfile}"
  log "cloudcore started (pid $(cat "${pidfile}"), log ${LOCAL}/cloud/cloudcore.log)"
fi

log "[4/5] join edge node ${NODE}"
token=""
for _ in $(seq 1 120); do
  token="$("${BIN}/keadm" gettoken --kube-config "${KUBECONFIG_PATH}" 2>/dev/null || true)"
  [[ -n "${token}" ]] && break
  sleep 0.5
done
[[ -n "${token}" ]] || die "cloudcore did not publish a join token within 60 s; see ${LOCAL}/cloud/cloudcore.log"
if [[ -f "${EDGE_DIR}/edgecore.pid" ]] && kill -0 "$(cat "${EDGE_DIR}/edgecore.pid")" 2>/dev/null; then
  log "edgecore already running (pid $(cat "${EDGE_DIR}/edgecore.pid"))"
else
  "${BIN}/keadm" join --cloudcore-ipport=127.0.0.1:10000 --token="${token}" --edgenode-name="${NODE}" \
    --node-ip=127.0.0.1 --data-dir="${EDGE_DIR}" --config="${EDGE_DIR}/edgecore.yaml" \
    --edgecore-binary="${BIN}/edgecore" --force
fi

log "[5/5] waiting for node ${NODE} to be Ready"
"${KUBECTL[@]}" wait --for=condition=Ready "node/${NODE}" --timeout=120s
"${KUBECTL[@]}" get nodes -o wide --show-labels
cat <<MSG

KubeEdge is up. Try:
  export KUBECONFIG=${KUBECONFIG_PATH}
  ${K8S_BIN}/kubectl get nodes
  ${K8S_BIN}/kubectl get objectsyncs -A
Logs: ${LOCAL}/cloud/cloudcore.log  ${EDGE_DIR}/edgecore.log
Stop everything with: make down
MSG
