# k2's build. CGO is off everywhere: one static binary, one build cache
# (a cgo and a non-cgo build of the control plane would each cost ~15 min cold).
GO      ?= go
export CGO_ENABLED = 0

K8S_VERSION := v1.37.2
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT      ?= $(shell git rev-parse HEAD 2>/dev/null)
BUILD_DATE  ?= $(shell git log -1 --format=%cI 2>/dev/null)

# Kubernetes components read their version from these; without them the
# embedded apiserver reports v0.0.0-master and kubectl cannot parse it.
K8S_LDFLAGS := $(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
	-X $(p).gitVersion=$(K8S_VERSION)-k2 -X $(p).gitMajor=1 -X $(p).gitMinor=37 \
	-X $(p).gitTreeState=clean -X $(p).gitCommit=$(COMMIT) -X $(p).buildDate=$(BUILD_DATE))
LDFLAGS := -s -w $(K8S_LDFLAGS) \
	-X k2.dev/k2/internal/version.Version=$(VERSION) \
	-X k2.dev/k2/internal/version.Commit=$(COMMIT) \
	-X k2.dev/k2/internal/version.BuildDate=$(BUILD_DATE)

E2E_PKGS := ./e2e/...
UNIT_PKGS := $(shell $(GO) list ./... | grep -v /e2e)

.PHONY: all build test test-unit test-e2e test-vm test-vm-run fuzz bench demo clean lint conformance conformance-ci

all: build

build: bin/k2 bin/containerd-shim-runc-v2

bin/k2: FORCE
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/k2 ./cmd/k2

# The runc shim containerd starts for every pod must be its own executable
# (served by k2 itself it fails with "ttrpc: closed"); k2 finds it beside
# itself. Built from the containerd module pinned in go.mod (a go.mod tool).
bin/containerd-shim-runc-v2: FORCE
	$(GO) build -ldflags '-s -w' -o $@ github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2

FORCE:

## test: everything CI runs — lint, unit tests, a short fuzz run, e2e against
## the built binary, then the VM tests (test-vm) on that same binary.
test: lint test-unit fuzz test-e2e test-vm-run

## lint: golangci-lint (v2.15.0, pinned in tools/go.mod, a module of its own
## so the main go.mod does not take its dependencies) with .golangci.yml —
## the layering rules (depguard), errorlint, misspell, revive's exported-doc
## rule — then tools' test that the layering rules catch a wrong import.
GOLANGCI_LINT := $(CURDIR)/bin/golangci-lint

lint: $(GOLANGCI_LINT)
	$(GOLANGCI_LINT) run ./...
	cd tools && GOLANGCI_LINT=$(GOLANGCI_LINT) $(GO) test -count=1 ./...

$(GOLANGCI_LINT): tools/go.mod tools/go.sum
	cd tools && $(GO) build -o $@ github.com/golangci/golangci-lint/v2/cmd/golangci-lint

test-unit:
	$(GO) vet ./...
	$(GO) test -ldflags '$(K8S_LDFLAGS)' -count=1 $(UNIT_PKGS)
	# Providers call the plugin SDK from many goroutines (a machine each):
	# its tests and the conformance kit's also run under the race detector
	# (cgo, gcc; no control plane in them, so ~1 min cold).
	CGO_ENABLED=1 $(GO) test -race -count=1 ./providers/sdk/... ./providers/providertest/...
	cd conformance && $(GO) vet ./... && $(GO) test -count=1 ./...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 15s ./artifact/k8sfile

test-e2e: build
	K2_E2E=1 K2_BIN=$(CURDIR)/bin/k2 $(GO) test -count=1 -timeout 40m -v $(E2E_PKGS)

## test-vm: the tests that boot k2 OS in qemu (TCG) VMs — the OS cluster,
## the libvirt provider and the metal network boot (docs/os.md, libvirt.md,
## metal.md): ~11 min on an idle 2-core machine, run after the other e2e
## tests, alone, because emulated VMs slow down many times on a loaded host.
test-vm: build test-vm-run

test-vm-run:
	K2_E2E=1 K2_VM_E2E=1 K2_METAL_E2E=1 K2_BIN=$(CURDIR)/bin/k2 $(GO) test -count=1 -timeout 40m -v \
		-run 'TestOSClusterOnVMs|TestLibvirtProviderEndToEnd|TestMetalNetworkBoot' $(E2E_PKGS)

bench: build
	K2_E2E=1 K2_BIN=$(CURDIR)/bin/k2 $(GO) test -ldflags '$(K8S_LDFLAGS)' -run '^$$' -bench . -benchtime 1x ./...

## demo: the README's first command — build examples/hello, push it to a
## registry served in-process by k2, pull it back and inspect it.
demo: build
	./scripts/demo.sh

## conformance: the upstream Kubernetes [Conformance] suite against a local
## 1 + 2 kubelet cluster, offline (~1 h; flags in CONFORMANCE_FLAGS, e.g.
## -focus, -nodes, -keep; reports in conformance/out; docs/conformance.md).
conformance:
	./scripts/conformance $(CONFORMANCE_FLAGS)

## conformance-ci: the fast subset CI runs (.ci/run): the API machinery and
## apps [Conformance] specs that are neither [Serial] nor [Slow].
conformance-ci:
	CONFORMANCE_OUT=$(CURDIR)/conformance/out-ci ./scripts/conformance \
		-focus '\[sig-(api-machinery|apps)\].*\[Conformance\]' -skip '\[Slow\]' -serial=false -nodes 8 $(CONFORMANCE_FLAGS)

clean:
	rm -rf bin conformance/bin
