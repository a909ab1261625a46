#!/usr/bin/env bash
# Measures, on a running `make up`, the RSS of an edgecore that is joined and
# holds no objects: it joins a second node (rss-node) with its own private
# containerd, waits until the node is Ready, and reads VmRSS/RssAnon/RssFile
# 25 s after start (before start-up pages are released, memory.
# releaseAfterSeconds=30) and 90 s after start. Cleans up after itself.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "${REPO_ROOT}"
LOCAL="${OUTPUT}/local"
NODE=rss-node
KUBECTL=("${K8S_BIN}/kubectl" --kubeconfig "${LOCAL}/cluster/admin.kubeconfig")
[[ -f "${LOCAL}/cloud/cloudcore.pid" ]] || die "cloudcore is not running: run make up first"
work="${OUTPUT}/bench-edge-rss"
rm -rf "${work}" && mkdir -p "${work}"
go build -o "${work}/localcontainerd" ./hack/localcontainerd
"${work}/localcontainerd" up -dir "${work}/ctrd" -cgroup-root /kubeedge-rss > "${work}/containerd.env" 2> "${work}/containerd.log"
edge_pid=""
cleanup() {
  [[ -n "${edge_pid}" ]] && kill "${edge_pid}" 2>/dev/null && wait "${edge_pid}" 2>/dev/null
  "${work}/localcontainerd" down -dir "${work}/ctrd" 2>/dev/null || true
  "${KUBECTL[@]}" delete node "${NODE}" --ignore-not-found >/dev/null 2>&1 || true
}
trap cleanup EXIT
token="$("${BIN}/keadm" gettoken --kube-config "${LOCAL}/cluster/admin.kubeconfig")"
"${BIN}/keadm" join --cloudcore-ipport=127.0.0.1:10000 --token="${token}" --edgenode-name="${NODE}" \
  --data-dir "${work}/node" -c "${work}/node/edgecore.yaml" --node-ip 127.0.0.2 --prepare-only \
  --remote-runtime-endpoint="unix://${work}/ctrd/containerd.sock" \
  --set modules.metaManager.metaServer.server=127.0.0.1:0 --set modules.eventBus.mqttServerInternal=tcp://127.0.0.1:0 \
  --set modules.edgeStream.port=0 --set modules.edged.cgroupRoot=/kubeedge-rss > "${work}/join.log"
"${BIN}/edgecore" --config "${work}/node/edgecore.yaml" > "${work}/edgecore.log" 2>&1 &
edge_pid=$!
start=$SECONDS
"${KUBECTL[@]}" wait --for=condition=Ready "node/${NODE}" --timeout=60s >/dev/null
printf 'node %s Ready %d s after start\n' "${NODE}" $((SECONDS - start))
sample() {
  printf '%3d s after start: %s\n' $((SECONDS - start)) \
    "$(grep -E '^(VmRSS|RssAnon|RssFile):' "/proc/${edge_pid}/status" | tr -s ' \t' ' ' | paste -sd ' ')"
}
sample_at() { local wait=$(($1 - (SECONDS - start))); (( wait > 0 )) && sleep "${wait}"; sample; }
sample_at 25
sample_at 90
