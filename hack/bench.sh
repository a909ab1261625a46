#!/usr/bin/env bash
# Go benchmarks: micro-benchmarks and the 1,000-object delivery benchmark
# against a real apiserver. The scale benchmarks on a running `make up` are
# hack/bench-restart.sh and hack/bench-hollow.sh; see docs/benchmarks.md.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "${REPO_ROOT}"
bash hack/build-k8s.sh
go test -run '^$' -bench . -benchmem -benchtime=200x ./internal/store/
go test -run '^$' -bench . -benchmem ./internal/wire/ ./internal/cloud/delivery/
go test -run '^$' -bench BenchmarkDeliver1000Objects -benchtime=3x ./internal/integration/
