# Shared settings for hack/*.sh. Sourced, not run.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUTPUT="${REPO_ROOT}/_output"
K8S_VERSION="v1.35.4"
K8S_BIN="${OUTPUT}/k8s/${K8S_VERSION}/bin"
BIN="${OUTPUT}/bin"
export PATH="${K8S_BIN}:${BIN}:$(go env GOPATH)/bin:${PATH}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
