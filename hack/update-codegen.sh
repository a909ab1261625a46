#!/usr/bin/env bash
# Regenerates the deepcopy functions of the API types (k8s.io/code-generator,
# pinned as a go.mod tool).
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$REPO_ROOT"
go tool deepcopy-gen --output-file zz_generated.deepcopy.go --go-header-file /dev/null ./pkg/apis/devices/v1beta1
