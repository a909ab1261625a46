#!/usr/bin/env bash
# `make down`: stops what `make up` started (mappers and the simulated
# thermostat, edgecore, cloudcore, the edge node's containerd with its pods,
# the control plane), each by its recorded PID, and checks that none is left.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "${REPO_ROOT}"
LOCAL="${OUTPUT}/local"
EDGE_DIR="${LOCAL}/edge"
MAPPERS="${LOCAL}/mappers"

# stop_pid NAME PIDFILE: SIGTERM, then SIGKILL after 10 s, if the pid is still NAME.
stop_pid() {
  local name=$1 pidfile=$2 pid
  [[ -f "${pidfile}" ]] || return 0
  pid="$(cat "${pidfile}")"
  if kill -0 "${pid}" 2>/dev/null && grep -q "${name}" "/proc/${pid}/cmdline" 2>/dev/null; then
    log "stopping ${name} (pid ${pid})"
    kill -TERM "${pid}" 2>/dev/null || true
    for _ in $(seq 1 100); do
      # A zombie (state Z) has exited; this sandbox's init may not reap it.
      state="$(awk '{print $3}' "/proc/${pid}/stat" 2>/dev/null || echo gone)"
      [[ "${state}" == gone || "${state}" == Z ]] && break
      sleep 0.1
    done
    state="$(awk '{print $3}' "/proc/${pid}/stat" 2>/dev/null || echo gone)"
    if [[ "${state}" != gone && "${state}" != Z ]]; then
      log "${name} did not stop in 10 s: SIGKILL"
      kill -KILL "${pid}" 2>/dev/null || true
    fi
  fi
  rm -f "${pidfile}"
}

stop_pid mapper "${MAPPERS}/modbus.pid"
stop_pid mapper "${MAPPERS}/opcua.pid"
stop_pid mapper "${MAPPERS}/thermostat.pid"
if [[ -x "${BIN}/keadm" && -f "${EDGE_DIR}/edgecore.yaml" ]]; then
  "${BIN}/keadm" reset --force --data-dir="${EDGE_DIR}" --config="${EDGE_DIR}/edgecore.yaml" || true
fi
stop_pid edgecore "${EDGE_DIR}/edgecore.pid"
stop_pid cloudcore "${LOCAL}/cloud/cloudcore.pid"
if [[ -d "${LOCAL}/containerd" ]]; then
  [[ -x "${BIN}/localcontainerd" ]] || go build -o "${BIN}/localcontainerd" ./hack/localcontainerd
  "${BIN}/localcontainerd" down --dir "${LOCAL}/containerd" || true
fi
[[ -x "${BIN}/localcluster" || -d "${LOCAL}/cluster" ]] && bash hack/cluster-down.sh
left="$(ps -eo pid=,stat=,args= | awk '$2 !~ /^Z/' | grep -E "${OUTPUT}/(bin|k8s)|${LOCAL}/containerd" | grep -v grep || true)"
if [[ -n "${left}" ]]; then
  die "processes left behind:\n${left}"
fi
log "everything stopped"
