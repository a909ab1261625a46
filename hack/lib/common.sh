# Shared settings for hack/*.sh. Sourced, not run.
set -euo pipefail
log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUTPUT="${REPO_ROOT}/_output"
K8S_VERSION="v1.35.4"
K8S_BIN="${OUTPUT}/k8s/${K8S_VERSION}/bin"
BIN="${OUTPUT}/bin"
# Go lives in /usr/local/go on these machines; a non-login CI shell may lack it.
[[ -x /usr/local/go/bin/go ]] && PATH="/usr/local/go/bin:${PATH}"
command -v go >/dev/null || die "go is not installed (expected Go 1.26 in /usr/local/go)"
export PATH="${K8S_BIN}:${BIN}:$(go env GOPATH)/bin:${PATH}"

