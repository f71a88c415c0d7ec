# Tessera: `make demo` runs the local simulated GPU cluster; `make test` runs
# every test (unit and integration on a real control plane).
SHELL := /usr/bin/env bash
GO ?= go
BIN := $(CURDIR)/bin
GOLANGCI_LINT_VERSION := v2.15.0
# go-nvml's cgo preamble calls NVML functions the header marks deprecated.
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations
# Integration tests build their own stack; never cache their results.
INTEGRATION_FLAGS ?= -count=1 -timeout=20m

.PHONY: all build images test-images control-plane peers generate manifests verify-generate test-chart test test-unit test-integration soak lint demo bench-gang bench-placement bench-scale bench-fragmentation bench-agent-memory clean

all: build

build:
	$(GO) build -o $(BIN)/tessera-scheduler ./cmd/scheduler
	$(GO) build -o $(BIN)/node-agent ./cmd/node-agent
	$(GO) build -o $(BIN)/launcher ./cmd/launcher

# Container images without a Docker engine (hack/images): an OCI layout and
# a tarball per component in _output/images, tagged with VERSION.
VERSION := $(shell cat VERSION)
images:
	cd hack/images && $(GO) run . -repo ../.. -out ../../_output/images -version $(VERSION)

# Opens each image, checks its entrypoint and user, and runs its binary
# from the image's own files.
test-images: images
	cd hack/images && $(GO) vet ./... && $(GO) test -count=1 ./...

control-plane:
	./hack/build-control-plane.sh

peers:
	./hack/build-peers.sh

generate:
	./hack/update-codegen.sh

# manifests/ is charts/tessera rendered with its defaults: edit the chart.
# The chart's dashboard is generated from hack/dashboard.
manifests: control-plane
	$(GO) run ./hack/dashboard
	$(GO) run ./hack/render-manifests

verify-generate: generate manifests
	@git diff --exit-code -- apis charts manifests || { echo "generated files are stale: run make generate manifests"; exit 1; }
	@untracked=$$(git ls-files --others --exclude-standard -- apis charts manifests); [ -z "$$untracked" ] || { echo "generated files not in git: $$untracked"; exit 1; }
	@$(GO) mod tidy -diff || { echo "go.mod or go.sum is not tidy: run go mod tidy"; exit 1; }

test: control-plane test-unit test-images test-chart test-integration

# The chart: helm lint and template with the default and the non-default
# values (charts/tessera/ci), and promtool on its alert rules: checked, and
# unit-tested (test/alerts). The server-side
# dry run of what it renders is test/integration/chart.
CHART := charts/tessera
test-chart: control-plane
	$(BIN)/helm lint --strict $(CHART)
	$(BIN)/helm lint --strict $(CHART) -f $(CHART)/ci/full-values.yaml
	$(BIN)/helm template tessera $(CHART) -n tessera-system >/dev/null
	$(BIN)/helm template tessera $(CHART) -n tessera-system -f $(CHART)/ci/full-values.yaml >/dev/null
	$(BIN)/promtool check rules $(CHART)/files/alerts.yaml
	$(BIN)/promtool test rules test/alerts/alerts_test.yaml

test-unit:
	$(GO) test -race $$($(GO) list ./... | grep -v /test/integration)

# The churn suite runs after the others, alone: it drives a scheduler
# process through timed steps.
test-integration: control-plane
	$(GO) test $(INTEGRATION_FLAGS) $$($(GO) list ./test/integration/... | grep -v /test/integration/churn)
	$(GO) test $(INTEGRATION_FLAGS) ./test/integration/churn/

# The churn suite over many seeds (make test runs two): the real stack with
# the scheduler as a process, random gangs, pods, node changes and kill -9;
# prints steps, evictions and invariant violations per seed.
SEEDS ?= 1-20
STEPS ?= 40
soak: control-plane
	mkdir -p _output
	set -o pipefail; $(GO) test -count=1 -timeout=0 -v ./test/integration/churn/ -run TestChurn -churn.seeds=$(SEEDS) -churn.steps=$(STEPS) -churn.strict-evictions 2>&1 | tee _output/soak.log | grep -E '^ +main_test.go|^churn:|^(---|ok|FAIL|PASS)'

$(BIN)/golangci-lint:
	@echo "installing golangci-lint $(GOLANGCI_LINT_VERSION) from the module proxy (takes minutes cold)"
	cd "$$(mktemp -d)" && GOBIN=$(BIN) GOFLAGS= $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

lint: $(BIN)/golangci-lint
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	$(GO) vet ./...
	$(BIN)/golangci-lint run ./...

demo: build control-plane
	$(GO) run ./hack/local-cluster $(DEMO_FLAGS)

# Gang scheduling, Tessera vs scheduler-plugins coscheduling and Volcano's
# vc-scheduler (peers built by hack/build-peers.sh), on 500 simulated nodes;
# BENCH_FLAGS="--nodes=100 --sizes=8,32 --together-gangs=20
# --preempt-low-size=10 --preempt-high-gangs=2 --preempt-high-size=16
# --repeats=1" for a quicker run (the defaults of the sizes, the
# arriving-together row and the preemption row need 500 nodes),
# --schedulers=tessera,coscheduling to leave Volcano out. Writes
# _output/bench-gang.csv.
bench-gang: build control-plane peers
	$(GO) run ./hack/bench/gang $(BENCH_FLAGS)

# NVLink-topology placement, Tessera's profile vs the stock default profile, on
# a mixed cluster with a job mix from the ITP trace, then pods/s on 1,000
# nodes; BENCH_FLAGS="--jobs=100 --throughput-nodes=200 --throughput-pods=300"
# for a quicker run. Writes _output/bench-placement.csv.
bench-placement: build control-plane
	$(GO) run ./hack/bench/placement $(BENCH_FLAGS)

# Scheduling at scale, Tessera's profile vs the stock default profile, same
# binary and client QPS: a burst of 10,000 pods of mixed shapes (shares,
# 1-8 GPUs, gangs) on 5,000 DGX H100 nodes, per profile and round (2 rounds,
# the order reversed in the second); pods/s, the scheduler's latency
# quantiles, CPU per pod, batching, peak RSS. BENCH_FLAGS="--nodes=500
# --pods=1000 --rounds=1" for a quicker run, --cpu-profiles=_output/pprof to
# profile, --in-process for each profile's CPU per pod on the scheduler
# framework alone (no apiserver; printed only). Writes _output/bench-scale.csv.
bench-scale: build control-plane
	$(GO) run ./hack/bench/scale $(BENCH_FLAGS)

# GPU fragmentation on the Alibaba 2023 trace (FGD paper's protocol), Tessera's
# profile vs the paper's baselines and the stock default profile, in-process
# on the real scheduler framework; BENCH_FLAGS="--seeds=42 --pods='../shared/traces/alibaba-gpu-2023/openb_pod_list_*.csv'"
# for one seed of every pod list. Writes _output/bench-fragmentation.csv.
bench-fragmentation:
	$(GO) run ./hack/bench/fragmentation $(BENCH_FLAGS)

# The node agent's memory (RSS, Go heap) with 0 and 5,000 pods in the cluster
# on other nodes, the real agent binary as its own process over fake NVML.
# Writes _output/bench-agent-memory.csv.
bench-agent-memory: build control-plane
	$(GO) run ./hack/bench/agent-memory $(BENCH_FLAGS)

clean:
	rm -rf $(BIN)
