#!/usr/bin/env bash
# Builds the project's binaries into _output/bin (static, no cgo).
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "${REPO_ROOT}"
mkdir -p "${BIN}"
log "building cloudcore edgecore keadm hollowedge into ${BIN}"
CGO_ENABLED=0 go build -trimpath -o "${BIN}/" ./cmd/...
