#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME each (default 10s).
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "${REPO_ROOT}"
FUZZTIME="${FUZZTIME:-10s}"
n=0
for pkg in $(go list ./...); do
  dir="$(go list -f '{{.Dir}}' "${pkg}")"
  grep -lq '^func Fuzz' "${dir}"/*_test.go 2>/dev/null || continue
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "${dir}"/*_test.go | sed 's/^func //'); do
    log "fuzz ${pkg} ${target} for ${FUZZTIME}"
    go test -run='^$' -fuzz="^${target}\$" -fuzztime="${FUZZTIME}" "${pkg}"
    n=$((n + 1))
  done
done
log "${n} fuzz targets ran without a failure"
