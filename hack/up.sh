#!/usr/bin/env bash
# `make up`: a local KubeEdge on this machine, from nothing.
#   1. prerequisites, the pinned Kubernetes control plane (built once, cached), the project's binaries
#   2. etcd + kube-apiserver + controller-manager + scheduler on 127.0.0.1
#   3. a private containerd for the edge node, with locally built pause and busybox images (no registry)
#   4. cloudcore (CloudHub :10000 websocket, :10001 quic, :10002 join, CloudStream :10003/:10004)
#   5. keadm join: edge node "edge-node" gets its certificate and edgecore starts, running pods on that containerd
#   6. the Modbus and OPC-UA mappers on edge-node, and a simulated Modbus thermostat
#   7. the demo: a Deployment on the edge node and a Device for the thermostat, shown working
# Everything runs detached with its files under _output/local; `make down` stops it.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "${REPO_ROOT}"
LOCAL="${OUTPUT}/local"
KUBECONFIG_PATH="${LOCAL}/cluster/admin.kubeconfig"
EDGE_DIR="${LOCAL}/edge"
MAPPERS="${LOCAL}/mappers"
NODE="${EDGE_NODE_NAME:-edge-node}"
KUBECTL=("${K8S_BIN}/kubectl" --kubeconfig "${KUBECONFIG_PATH}")

# running NAME PIDFILE: whether the process recorded in PIDFILE is alive and is NAME.
running() {
  [[ -f "$2" ]] && kill -0 "$(cat "$2")" 2>/dev/null && grep -q "$1" "/proc/$(cat "$2")/cmdline" 2>/dev/null
}

# start NAME PIDFILE LOG COMMAND...: start COMMAND detached unless it already runs.
start() {
  local name=$1 pidfile=$2 logfile=$3
  shift 3
  if running "${name}" "${pidfile}"; then
    log "${name} already running (pid $(cat "${pidfile}"))"
    return
  fi
  setsid "$@" >> "${logfile}" 2>&1 < /dev/null &
  echo $! > "${pidfile}"
  log "${name} started (pid $(cat "${pidfile}"), log ${logfile})"
}

# wait_for WHAT SECONDS COMMAND...: poll COMMAND every 0.5 s until it succeeds.
wait_for() {
  local what=$1 secs=$2
  shift 2
  for _ in $(seq 1 $((secs * 2))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  die "${what} did not happen within ${secs} s"
}

log "[1/7] prerequisites, control plane binaries and project binaries"
bash hack/install-deps.sh
bash hack/build-k8s.sh
bash hack/build.sh

log "[2/7] control plane (its egress selector sends kubelet traffic to CloudStream)"
bash hack/cluster-up.sh

log "[3/7] containerd for the edge node, with local images"
go build -o "${BIN}/localcontainerd" ./hack/localcontainerd
eval "$("${BIN}/localcontainerd" up --dir "${LOCAL}/containerd" --cgroup-root /kubeedge-local)"

log "[4/7] cloudcore"
mkdir -p "${LOCAL}/cloud"
if ! running cloudcore "${LOCAL}/cloud/cloudcore.pid"; then
  "${BIN}/cloudcore" --defaultconfig \
    | sed -e "s#kubeConfig: .*#kubeConfig: ${KUBECONFIG_PATH}#" -e "s#address: 0.0.0.0#address: 127.0.0.1#" \
      -e "/^  cloudStream:/,/^  [a-z]/ s#enable: false#enable: true#" \
    > "${LOCAL}/cloud/cloudcore.yaml"
fi
ulimit -n "$(ulimit -Hn)"
# shellcheck disable=SC2086 # CLOUDCORE_FLAGS is a list of flags
start cloudcore "${LOCAL}/cloud/cloudcore.pid" "${LOCAL}/cloud/cloudcore.log" \
  "${BIN}/cloudcore" --config "${LOCAL}/cloud/cloudcore.yaml" ${CLOUDCORE_FLAGS:-}

log "[5/7] join edge node ${NODE}"
token=""
for _ in $(seq 1 120); do
  token="$("${BIN}/keadm" gettoken --kube-config "${KUBECONFIG_PATH}" 2>/dev/null || true)"
  [[ -n "${token}" ]] && break
  sleep 0.5
done
[[ -n "${token}" ]] || die "cloudcore did not publish a join token within 60 s; see ${LOCAL}/cloud/cloudcore.log"
if running edgecore "${EDGE_DIR}/edgecore.pid"; then
  log "edgecore already running (pid $(cat "${EDGE_DIR}/edgecore.pid"))"
else
  "${BIN}/keadm" join --cloudcore-ipport=127.0.0.1:10000 --token="${token}" --edgenode-name="${NODE}" \
    --node-ip=127.0.0.1 --data-dir="${EDGE_DIR}" --config="${EDGE_DIR}/edgecore.yaml" \
    --remote-runtime-endpoint="${CONTAINERD_ENDPOINT}" --set "modules.edged.cgroupRoot=${CONTAINERD_CGROUP_ROOT}" \
    --set modules.edgeStream.enable=true \
    --edgecore-binary="${BIN}/edgecore" --force
fi
"${KUBECTL[@]}" wait --for=condition=Ready "node/${NODE}" --timeout=120s >/dev/null

log "[6/7] mappers (Modbus, OPC-UA) on ${NODE} and a simulated Modbus thermostat"
mkdir -p "${MAPPERS}"
dmi_socket="$(awk '/^  dmi:/{f=1} f && /socket:/{print $2; exit}' "${EDGE_DIR}/edgecore.yaml")"
[[ -n "${dmi_socket}" ]] || die "no modules.dmi.socket in ${EDGE_DIR}/edgecore.yaml"
start "simulate-modbus" "${MAPPERS}/thermostat.pid" "${MAPPERS}/thermostat.log" \
  "${BIN}/mapper" simulate-modbus --listen 127.0.0.1:1502
for proto in modbus opcua; do
  port=7777
  [[ ${proto} == opcua ]] && port=7778
  start "mapper ${proto}" "${MAPPERS}/${proto}.pid" "${MAPPERS}/${proto}.log" \
    "${BIN}/mapper" "${proto}" --edgecore-socket "${dmi_socket}" --socket "${MAPPERS}/${proto}.sock" \
    --health-addr "127.0.0.1:${port}"
done

log "[7/7] demo: a Deployment on ${NODE} and the thermostat as a Device"
"${KUBECTL[@]}" apply -f build/demo/app.yaml -f build/demo/thermostat.yaml
"${KUBECTL[@]}" rollout status deployment/hello-edge --timeout=180s
reported() {
  "${KUBECTL[@]}" get device thermostat-1 \
    -o jsonpath='{range .status.twins[*]}{.propertyName}={.reported.value}{" "}{end}'
}
has_temperature() { [[ "$(reported)" == *temperature=[0-9]* ]]; }
wait_for "the thermostat's temperature in Device.status" 90 has_temperature
pod_ip="$("${KUBECTL[@]}" get pods -l app=hello-edge -o jsonpath='{.items[0].status.podIP}')"

"${KUBECTL[@]}" get nodes -o wide
"${KUBECTL[@]}" get pods -o wide
cat <<MSG

KubeEdge is up: a real control plane, cloudcore, and edge node ${NODE} running pods on containerd.
  export KUBECONFIG=${KUBECONFIG_PATH}
  ${K8S_BIN}/kubectl get nodes
  ${K8S_BIN}/kubectl get pods -o wide                  # hello-edge, on ${NODE}
  curl http://${pod_ip}:8080/                          # the demo app, on the pod network bridge
  ${K8S_BIN}/kubectl get device thermostat-1 -o yaml   # twins: $(reported)
  ${K8S_BIN}/kubectl patch device thermostat-1 --type=json \\
      -p '[{"op":"replace","path":"/spec/properties/1/desired/value","value":"30"}]'   # the thermostat's setpoint
  ${K8S_BIN}/kubectl get objectsyncs -A                # what the edge acknowledged
Logs: ${LOCAL}/cloud/cloudcore.log  ${EDGE_DIR}/edgecore.log  ${MAPPERS}/*.log
Stop everything with: make down
MSG
