#!/usr/bin/env bash
# Static checks for `make verify` and CI: gofmt, go vet, staticcheck and a
# tidy go.mod for the main module. Every check runs; the script fails at the
# end listing the ones that failed and their offenders.
#
# staticcheck is installed once into _output/tools at a pinned version and
# rebuilt when that version or the Go toolchain changes (a staticcheck built
# by an older Go cannot load packages for a newer one).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "${REPO_ROOT}"

STATICCHECK_VERSION="v0.7.0"
TOOLS="${OUTPUT}/tools"
failed=()

check_gofmt() {
  log "gofmt"
  local files unformatted
  # hack/tools/k8s is a separate module of upstream sources; _output holds
  # build products.
  mapfile -d '' files < <(find . \( -path ./_output -o -path ./hack/tools/k8s -o -path ./.git \) -prune \
    -o -type f -name '*.go' -print0)
  if ((${#files[@]} == 0)); then
    return 0
  fi
  if ! unformatted="$(gofmt -l "${files[@]}" 2>&1)"; then
    printf 'gofmt could not parse:\n%s\n' "${unformatted}" >&2
    failed+=("gofmt (parse errors above)")
  elif [[ -n "${unformatted}" ]]; then
    printf 'not gofmt-ed (run gofmt -w on them):\n%s\n' "${unformatted}" >&2
    failed+=("gofmt: ${unformatted//$'\n'/ }")
  fi
}

check_vet() {
  log "go vet ./..."
  if ! go vet ./...; then
    failed+=("go vet (offenders above)")
  fi
}

ensure_staticcheck() {
  local bin="${TOOLS}/staticcheck" tab=$'\t' goversion built
  goversion="$(go env GOVERSION)"
  if [[ -x "${bin}" ]]; then
    # "path: go1.26.8" and "\tmod\thonnef.co/go/tools\tv0.7.0\t..."
    built="$(go version -m "${bin}" 2>/dev/null || true)"
    if [[ "${built}" == *": ${goversion}"* && "${built}" == *"honnef.co/go/tools${tab}${STATICCHECK_VERSION}"* ]]; then
      return 0
    fi
  fi
  log "installing staticcheck ${STATICCHECK_VERSION} into ${TOOLS}"
  mkdir -p "${TOOLS}"
  GOBIN="${TOOLS}" GOFLAGS= go install "honnef.co/go/tools/cmd/staticcheck@${STATICCHECK_VERSION}" \
    || die "could not install staticcheck ${STATICCHECK_VERSION}"
}

check_staticcheck() {
  ensure_staticcheck
  log "staticcheck ./..."
  if ! "${TOOLS}/staticcheck" ./...; then
    failed+=("staticcheck (offenders above)")
  fi
}

check_tidy() {
  log "go mod tidy -diff"
  if ! go mod tidy -diff; then
    failed+=("go mod tidy -diff (go.mod/go.sum not tidy or not resolvable, see above; run go mod tidy)")
  fi
}

check_gofmt
check_vet
check_staticcheck
check_tidy

if ((${#failed[@]} > 0)); then
  printf 'verify failed:\n' >&2
  printf '  - %s\n' "${failed[@]}" >&2
  exit 1
fi
log "verify: all checks passed"
