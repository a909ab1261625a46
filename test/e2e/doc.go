// Package e2e tests the built binaries (cloudcore, edgecore, keadm from
// _output/bin, built by `make build`) as separate processes against a real
// control plane, driven the way a user drives them: configuration files,
// keadm, kubectl and client-go. It holds tests only.
//
// Without the binaries the tests skip, or fail under KUBEEDGE_REQUIRE_ALL=1
// as in `make test`. The in-process tests of the same paths, which can look
// inside the components, live in internal/integration.
package e2e
