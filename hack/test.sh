#!/usr/bin/env bash
# The whole test suite, exactly what CI runs (.ci/run calls `make test`):
# prerequisites, the control plane build (cached), verify, all tests with
# -race against real dependencies, then every fuzz target for a short time.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "${REPO_ROOT}"
start=$SECONDS
bash hack/install-deps.sh
bash hack/build-k8s.sh
bash hack/build.sh
bash hack/verify.sh
# Tests that need the control plane or root fail instead of skipping.
export KUBEEDGE_REQUIRE_ALL=1
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
log "go test -race ./... (real apiserver, real sockets)"
go test -race -count=1 -timeout 30m ./... 2>&1 | tee "${OUTPUT}/test.log"
status=${PIPESTATUS[0]}
[[ ${status} == 0 ]] || die "tests failed (log: ${OUTPUT}/test.log)"
FUZZTIME="${FUZZTIME:-5s}" bash hack/fuzz.sh
log "make test passed in $((SECONDS - start)) s"
