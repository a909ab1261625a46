# A thin index over hack/*.sh; each script says what it does.
.PHONY: all build up down test verify bench k8s fuzz clean

all: build

build:            ## build every binary into _output/bin
	bash hack/build.sh

k8s:              ## build the pinned Kubernetes control plane into _output/k8s (cached)
	bash hack/build-k8s.sh

up:               ## local cloud + edge on a real control plane; prints the kubeconfig
	bash hack/up.sh

down:             ## stop everything `make up` started
	bash hack/down.sh

test:             ## the whole suite: install prerequisites, verify, unit + integration + e2e (-race), fuzz
	bash hack/test.sh

verify:           ## gofmt, go vet, staticcheck, go mod tidy
	bash hack/verify.sh

bench:            ## benchmarks; results go to docs/benchmarks.md by hand
	bash hack/bench.sh

fuzz:             ## every fuzz target for FUZZTIME (default 10s) each
	bash hack/fuzz.sh

clean:
	rm -rf _output/bin _output/local
