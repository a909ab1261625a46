#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME each (default 10s).
#
# Go 1.26's fuzz coordinator can report a bare "context deadline exceeded"
# when a duration -fuzztime expires while a worker is mid-call on a loaded
# machine (go.dev/issue/75804, fixed in Go 1.27). That is not a finding: a
# real one prints "Failing input written to" and leaves a reproducer under
# testdata/fuzz. Such a run is replayed against its corpus and fuzzed once
# more; any other failure, or the race twice in a row, fails the suite.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "${REPO_ROOT}"
FUZZTIME="${FUZZTIME:-10s}"
log_file="$(mktemp)"
trap 'rm -f "${log_file}"' EXIT

# fuzz_once PKG TARGET: 0 passed, 1 real failure, 2 the coordinator race.
fuzz_once() {
  local pkg="$1" target="$2"
  if go test -run='^$' -fuzz="^${target}\$" -fuzztime="${FUZZTIME}" "${pkg}" 2>&1 | tee "${log_file}"; then
    return 0
  fi
  if grep -q 'context deadline exceeded' "${log_file}" \
    && ! grep -qE 'Failing input written to|panic:|_test\.go:[0-9]+:' "${log_file}"; then
    return 2
  fi
  return 1
}

n=0
for pkg in $(go list ./...); do
  dir="$(go list -f '{{.Dir}}' "${pkg}")"
  grep -lq '^func Fuzz' "${dir}"/*_test.go 2>/dev/null || continue
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "${dir}"/*_test.go | sed 's/^func //'); do
    log "fuzz ${pkg} ${target} for ${FUZZTIME}"
    rc=0
    fuzz_once "${pkg}" "${target}" || rc=$?
    if [[ ${rc} == 2 ]]; then
      log "${target}: bare deadline at the end of -fuzztime, no failing input (go.dev/issue/75804); replaying the corpus and fuzzing again"
      go test -count=1 -run="^${target}\$" "${pkg}" || die "${target}: corpus replay failed"
      rc=0
      fuzz_once "${pkg}" "${target}" || rc=$?
    fi
    case ${rc} in
      0) ;;
      2) die "${target}: the fuzz coordinator hit its deadline twice in a row" ;;
      *) die "${target}: fuzzing found a failure (see above)" ;;
    esac
    n=$((n + 1))
  done
done
log "${n} fuzz targets ran without a failure"
