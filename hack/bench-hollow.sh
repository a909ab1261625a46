#!/usr/bin/env bash
# Hollow-node scale benchmark on a running `make up` (real control plane and
# cloudcore binary): starts COUNT hollow edge nodes (default 1000) from one
# hollowedge process, measures the time until all are Ready in the apiserver,
# cloudcore's RSS per session, then restarts cloudcore and measures the time
# until every session is back (the reconnect storm). Stops the fleet at the end.
# HEARTBEAT (s, default 15) can be raised for very large fleets. READY_WAIT
# (s, default 600) bounds the wait for Ready: with cloudcore's default client
# QPS of 200, 10,000 nodes' Leases cannot all stay renewed (see
# docs/benchmarks.md), so the script then reports how many were Ready.
# KEEP_FLEET=1 leaves the fleet running and skips the restart.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "${REPO_ROOT}"
COUNT="${COUNT:-1000}"
LOCAL="${OUTPUT}/local"
KUBECTL=("${K8S_BIN}/kubectl" --kubeconfig "${LOCAL}/cluster/admin.kubeconfig")
pidfile="${LOCAL}/cloud/cloudcore.pid"
cloudlog="${LOCAL}/cloud/cloudcore.log"
[[ -f "${pidfile}" ]] || die "cloudcore is not running: run make up first"
ulimit -n "$(ulimit -Hn)"
now_ms() { date +%s%3N; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
ready_hollow() {
  "${KUBECTL[@]}" get nodes -l kubeedge.io/hollow=true --no-headers 2>/dev/null | awk '$2 == "Ready"' | wc -l
}
started_since() { tail -n +"$1" "${cloudlog}" | grep -c "session started" || true; }

cloud_pid=$(cat "${pidfile}")
rss0=$(rss_kb "${cloud_pid}")
token=$("${BIN}/keadm" gettoken --kube-config "${LOCAL}/cluster/admin.kubeconfig")
rm -rf "${LOCAL}/hollow"
log "starting ${COUNT} hollow edge nodes"
t0=$(now_ms)
line0=$(($(wc -l < "${cloudlog}") + 1))
setsid "${BIN}/hollowedge" --count "${COUNT}" --dir "${LOCAL}/hollow" --token "${token}" --start-rate 0 \
  --heartbeat "${HEARTBEAT:-15}" > "${LOCAL}/hollow.log" 2>&1 < /dev/null &
hollow_pid=$!
trap 'kill -TERM ${hollow_pid} 2>/dev/null || true' EXIT
until (( $(started_since "${line0}") >= COUNT )); do sleep 0.2; kill -0 "${hollow_pid}" || die "hollowedge died: $(tail -5 "${LOCAL}/hollow.log")"; done
t1=$(now_ms)
ready_deadline=$(($(now_ms) + ${READY_WAIT:-600} * 1000))
until (( (ready=$(ready_hollow)) >= COUNT )) || (( $(now_ms) > ready_deadline )); do sleep 1; done
t2=$(now_ms)
sleep 5 # let client-side buffers settle before reading RSS
rss1=$(rss_kb "${cloud_pid}")
printf 'hollow nodes: %d\nall sessions connected after %d ms; %d Ready in the apiserver after %d ms\n' "${COUNT}" $((t1 - t0)) "${ready}" $((t2 - t0))
printf 'cloudcore RSS: %d MiB before, %d MiB with the sessions: %.1f KiB per session\n' $((rss0 / 1024)) $((rss1 / 1024)) "$(echo "(${rss1} - ${rss0}) / ${COUNT}" | bc -l)"
printf 'hollowedge RSS (all %d client sessions): %d MiB\n' "${COUNT}" $(($(rss_kb "${hollow_pid}") / 1024))

if [[ -n "${KEEP_FLEET:-}" ]]; then
  trap - EXIT
  log "KEEP_FLEET set: hollowedge (pid ${hollow_pid}) keeps running; stop it with kill ${hollow_pid}"
  exit 0
fi
log "restarting cloudcore: reconnect storm"
line1=$(($(wc -l < "${cloudlog}") + 1))
t3=$(now_ms)
kill -TERM "${cloud_pid}"
while [[ "$(awk '{print $3}' /proc/${cloud_pid}/stat 2>/dev/null || echo gone)" != @(gone|Z) ]]; do sleep 0.01; done
setsid "${BIN}/cloudcore" --config "${LOCAL}/cloud/cloudcore.yaml" >> "${cloudlog}" 2>&1 < /dev/null &
echo $! > "${pidfile}"
until (( $(started_since "${line1}") >= COUNT + 1 )); do sleep 0.1; done
t4=$(now_ms)
printf 'reconnect storm: all %d sessions back %d ms after the restart began\n' $((COUNT + 1)) $((t4 - t3))
