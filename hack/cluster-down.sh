#!/usr/bin/env bash
# Stops the local control plane started by hack/cluster-up.sh and removes its
# blackhole route. Logs and data stay in _output/local/cluster until the next
# cluster-up.sh, which starts afresh.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

cd "${REPO_ROOT}"
mkdir -p "${BIN}"
go build -o "${BIN}/localcluster" ./hack/localcluster
"${BIN}/localcluster" down --dir "${OUTPUT}/local/cluster"
