# policy-webhook — run `make help` for the targets.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
BIN := bin

# The local control plane (kube-apiserver, kube-controller-manager, kubectl,
# etcd) is built from its Go modules once per machine into a cache outside the
# repository, keyed by version.
KUBE_VERSION := v1.37.2
ETCD_VERSION := v3.6.16
CONTROLLER_GEN_VERSION := v0.23.0
TOOLS_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/policy-webhook/tools
TOOLS_DIR := $(TOOLS_CACHE)/kube-$(KUBE_VERSION)_etcd-$(ETCD_VERSION)
export KUBEBUILDER_ASSETS := $(TOOLS_DIR)
KUBECTL := $(TOOLS_DIR)/kubectl
CONTROLLER_GEN := $(GO) run sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
# golangci-lint, at the version hack/tools/lint/go.mod pins, built once into the tools cache.
GOLANGCI_LINT_VERSION := $(shell sed -n 's|^require github.com/golangci/golangci-lint/v2 ||p' hack/tools/lint/go.mod)
GOLANGCI_LINT := $(TOOLS_CACHE)/golangci-lint-$(GOLANGCI_LINT_VERSION)
# What make generate and make manifests write, diffed by make verify.
GENERATED := apis/policy/v1alpha1/zz_generated.deepcopy.go apis/wgpolicyk8s/v1alpha2/zz_generated.deepcopy.go manifests/crds manifests/components/policyreports manifests/components/openreports policy/cel/schemas

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z_-]+:.*## /{printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/policy-webhook.
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/policy-webhook ./cmd/policy-webhook

.PHONY: fmt
fmt: ## gofmt the tree.
	gofmt -s -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## go vet every package (the chart tests' module too).
	$(GO) vet ./...
	cd test/chart && $(GO) vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## golangci-lint with the repository's .golangci.yml.
	$(GOLANGCI_LINT) run ./...
	cd test/chart && $(GOLANGCI_LINT) run ./...

$(GOLANGCI_LINT): hack/tools/lint/go.mod hack/tools/lint/go.sum
	cd hack/tools/lint && GOWORK=off $(GO) build -o $@ github.com/golangci/golangci-lint/v2/cmd/golangci-lint

.PHONY: verify
verify: lint ## gofmt, golangci-lint (go vet among its linters), and generated code up to date (what CI checks before the tests).
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@big=$$(git ls-files -z | xargs -0 -r stat -c '%s %n' | awk '$$1 > 1048576 && $$2 !~ /^policy\/cel\/schemas\// {print $$2}'); \
		if [ -n "$$big" ]; then echo "files over 1 MiB are tracked (build output? ignore it instead):"; echo "$$big"; exit 1; fi
	$(MAKE) --no-print-directory generate manifests
	@if ! git diff --exit-code --stat -- $(GENERATED) || [ -n "$$(git status --porcelain -- $(GENERATED))" ]; then \
		echo "generated code is out of date: run make generate manifests and commit the result"; exit 1; fi

.PHONY: generate
generate: ## Regenerate deepcopy code and the schemas CEL expressions are typed by.
	$(CONTROLLER_GEN) object paths=./apis/...
	# The build settings of hack/build-tools.sh, so the Kubernetes packages
	# kube-apiserver was built from come from the build cache.
	cd hack/tools/kube && GOWORK=off CGO_ENABLED=0 $(GO) run -mod=readonly -trimpath -tags selinux,notest,grpcnotrace ./celschema $(CURDIR)/policy/cel/schemas/pod.json
	cp manifests/crds/stable.example.com_myapples.yaml policy/cel/schemas/myapples.yaml

.PHONY: manifests
manifests: ## Regenerate the AdmissionPolicy CRD into manifests/crds and the PolicyReport CRDs into manifests/components/policyreports; copy the OpenReports CRDs of the go.mod version into manifests/components/openreports.
	$(CONTROLLER_GEN) crd paths=./apis/policy/v1alpha1/... output:crd:artifacts:config=manifests/crds
	$(CONTROLLER_GEN) crd paths=./apis/wgpolicyk8s/... output:crd:artifacts:config=manifests/components/policyreports
	# The module's own CRDs, so that the schema the API server checks is the
	# one its Go types were written for (install: the module cache is read only).
	install -m 0644 "$$($(GO) list -m -f '{{.Dir}}' github.com/openreports/reports-api)"/config/crd/openreports.io_{clusterreports,reports}.yaml manifests/components/openreports/

.PHONY: tools
tools: $(TOOLS_DIR)/.complete ## Build kube-apiserver, kube-controller-manager, kubectl and etcd into the tools cache.

$(TOOLS_DIR)/.complete: $(wildcard hack/tools/*/go.mod hack/tools/*/go.sum) hack/build-tools.sh
	hack/build-tools.sh "$(TOOLS_DIR)"

.PHONY: print-kubectl
print-kubectl: ## Print the path of the tools cache's kubectl.
	@echo $(KUBECTL)

.PHONY: test
test: tools ## Unit and end-to-end tests (builds the tools on first use), then make fuzz.
	$(GO) test -count=1 ./...
	cd test/chart && $(GO) test -count=1 ./...
	$(MAKE) --no-print-directory fuzz

# Each fuzz target runs for FUZZTIME beyond its seeds (which go test runs
# anyway): seven targets at 20s add about three minutes to make test on 2 cores
# once the build cache holds the instrumented packages (the first run builds
# every dependency instrumented, which takes minutes). Inputs are not
# minimized (FUZZMINIMIZETIME): minimizing each new input, up to 60s by
# default, would take the whole run where an execution costs milliseconds
# (FuzzCompile: 27 executions in 20s, against 2,400 without). A failure
# leaves its input in the package's testdata/fuzz; keep it there as a seed
# with the fix (`go test -run '^$' -fuzz ^FuzzX$` minimizes it by default).
# Each run starts from the seeds (go clean -fuzzcache): a cache grown over
# runs is replayed first, and FuzzCompile's 449 cached inputs took all of
# its 20s, so the time would not be spent exploring. hack/fuzz.sh passes
# over go1.26's fuzz-deadline race (golang/go#75804) and nothing else.
FUZZTIME ?= 20s
FUZZMINIMIZETIME ?= 0s

.PHONY: fuzz
fuzz: ## Run every fuzz target (func FuzzX in a _test.go file) for FUZZTIME each (default 20s), inputs not minimized.
	hack/fuzz.sh "$(GO)" $(FUZZTIME) $(FUZZMINIMIZETIME)

# Targets kept beside the parts they drive (deploy, bench, ...).
-include hack/make/*.mk
