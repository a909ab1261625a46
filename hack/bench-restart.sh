#!/usr/bin/env bash
# Measures, on a running `make up`, the time from a cloudcore restart (SIGTERM,
# then start again) until edgecore has reconnected and until the node's Lease
# shows a heartbeat newer than the restart. Repeats RUNS times (default 5).
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "${REPO_ROOT}"
LOCAL="${OUTPUT}/local"
NODE="${EDGE_NODE_NAME:-edge-node}"
KUBECTL=("${K8S_BIN}/kubectl" --kubeconfig "${LOCAL}/cluster/admin.kubeconfig")
pidfile="${LOCAL}/cloud/cloudcore.pid"
edgelog="${LOCAL}/edge/edgecore.log"
[[ -f "${pidfile}" ]] || die "cloudcore is not running: run make up first"
now_ms() { date +%s%3N; }
for run in $(seq 1 "${RUNS:-5}"); do
  before=$(grep -c "connected to cloud" "${edgelog}" || true)
  pid=$(cat "${pidfile}")
  t0=$(now_ms)
  kill -TERM "${pid}"
  while [[ "$(awk '{print $3}' /proc/${pid}/stat 2>/dev/null || echo gone)" != @(gone|Z) ]]; do sleep 0.01; done
  setsid "${BIN}/cloudcore" --config "${LOCAL}/cloud/cloudcore.yaml" >> "${LOCAL}/cloud/cloudcore.log" 2>&1 < /dev/null &
  echo $! > "${pidfile}"
  until (( $(grep -c "connected to cloud" "${edgelog}" || true) > before )); do sleep 0.01; done
  t1=$(now_ms)
  while :; do
    renew=$("${KUBECTL[@]}" get lease -n kube-node-lease "${NODE}" -o jsonpath='{.spec.renewTime}')
    renew_ms=$(date -d "${renew}" +%s%3N)
    (( renew_ms >= t0 )) && break
    sleep 0.05
  done
  t2=$(now_ms)
  printf 'run %d: reconnected after %d ms, fresh lease heartbeat after %d ms\n' "${run}" $((t1 - t0)) $((t2 - t0))
  sleep 2
done
