#!/usr/bin/env bash
# Regenerates pkg/apis/dmi/v1beta1/api.pb.go and api_grpc.pb.go from api.proto.
# Dev-only: the generated code is committed, so builds and CI never need this.
# Needs protoc and the well-known protos (Debian: apt-get install
# protobuf-compiler libprotobuf-dev); the Go plugins are
# installed at pinned versions into _output/tools.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "${REPO_ROOT}"
PROTOC_GEN_GO_VERSION=v1.36.12     # = google.golang.org/protobuf in go.mod
PROTOC_GEN_GO_GRPC_VERSION=v1.5.1
TOOLS="${OUTPUT}/tools"
command -v protoc >/dev/null || die "protoc missing: apt-get install -y protobuf-compiler libprotobuf-dev"
[[ -f /usr/include/google/protobuf/any.proto ]] || die "well-known protos missing: apt-get install -y libprotobuf-dev"
mkdir -p "${TOOLS}"
if [[ ! -x ${TOOLS}/protoc-gen-go ]] || ! "${TOOLS}/protoc-gen-go" --version | grep -q "${PROTOC_GEN_GO_VERSION}"; then
  log "installing protoc-gen-go ${PROTOC_GEN_GO_VERSION}"
  GOBIN="${TOOLS}" go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO_VERSION}"
fi
if [[ ! -x ${TOOLS}/protoc-gen-go-grpc ]] || ! "${TOOLS}/protoc-gen-go-grpc" --version | grep -q "${PROTOC_GEN_GO_GRPC_VERSION#v}"; then
  log "installing protoc-gen-go-grpc ${PROTOC_GEN_GO_GRPC_VERSION}"
  GOBIN="${TOOLS}" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@${PROTOC_GEN_GO_GRPC_VERSION}"
fi
log "protoc $(protoc --version)"
PATH="${TOOLS}:${PATH}" protoc -I . -I /usr/include \
  --go_out=. --go_opt=paths=source_relative \
  --go-grpc_out=. --go-grpc_opt=paths=source_relative \
  pkg/apis/dmi/v1beta1/api.proto
log "generated pkg/apis/dmi/v1beta1/api.pb.go, api_grpc.pb.go"
