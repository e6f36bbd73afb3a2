# kubectl istio-upgrade: build, test, test bed, demo, docs, dist.
# `make demo` runs the whole upgrade runbook on the simulated cluster; `make test` passes the tests.
SHELL := /bin/bash
.DEFAULT_GOAL := build

MODULE      := github.com/istio-upgrade/kubectl-istio-upgrade
VERSION     ?= v0.1.0
GIT_COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
# pkg/istio.build stamps the plugin and its companion alike: the plugin refuses a companion of another build.
BUILD_LDFLAGS := -X $(MODULE)/pkg/istio.build=$(VERSION)-$(GIT_COMMIT)
LDFLAGS     := -s -w -X $(MODULE)/pkg/cli.version=$(VERSION) -X $(MODULE)/pkg/cli.gitCommit=$(GIT_COMMIT) $(BUILD_LDFLAGS)
GO          ?= go
BIN_DIR     := $(CURDIR)/bin
PLUGIN      := $(BIN_DIR)/kubectl-istio_upgrade
# The companion that runs Istio's analyzers (precheck, migrate-ns's gate); it ships beside the plugin.
ANALYZER    := $(BIN_DIR)/istio-upgrade-analyze

# Heavy test-bed builds are cached outside the checkout (a fresh clone reuses them) and keyed by version.
CACHE_DIR   ?= $(HOME)/.cache/kubectl-istio-upgrade
TESTBED_DIR ?= $(CURDIR)/.testbed
export TESTBED_DIR

K8S_VERSION  := v1.36.3
KWOK_VERSION := v0.8.0
ETCD_VERSION := v3.6.8
# helm for the Helm profile: the same Helm SDK release the plugin reads releases with.
HELM_VERSION := $(shell awk '$$1=="helm.sh/helm/v3"{print $$2}' test/testbed/tools/helm/go.mod)
PROM_VERSION := $(shell awk '$$1=="github.com/prometheus/prometheus"{print $$2}' test/testbed/tools/prometheus/go.mod)
# Development builds of istio.io/istio, stamped as an "old" and a "new" release for the test bed.
ISTIO_OLD_VERSION := 1.30.0
ISTIO_NEW_VERSION := 1.31.0
ISTIO_OLD_PSEUDO  := $(shell awk '$$1=="istio.io/istio"{print $$2}' test/testbed/tools/istio-old/go.mod)
ISTIO_NEW_PSEUDO  := $(shell awk '$$1=="istio.io/istio"{print $$2}' test/testbed/tools/istio-new/go.mod)

K8S_BIN       := $(CACHE_DIR)/k8s-$(K8S_VERSION)
KWOK_BIN      := $(CACHE_DIR)/kwok-$(KWOK_VERSION)
ETCD_BIN      := $(CACHE_DIR)/etcd-$(ETCD_VERSION)
HELM_BIN      := $(CACHE_DIR)/helm-$(HELM_VERSION)
PROM_BIN      := $(CACHE_DIR)/prometheus-$(PROM_VERSION)
ISTIO_OLD_BIN := $(CACHE_DIR)/istio-$(ISTIO_OLD_VERSION)-$(lastword $(subst -, ,$(ISTIO_OLD_PSEUDO)))
ISTIO_NEW_BIN := $(CACHE_DIR)/istio-$(ISTIO_NEW_VERSION)-$(lastword $(subst -, ,$(ISTIO_NEW_PSEUDO)))
AGENT         := $(TESTBED_DIR)/bin/testbed-agent

K8S_LDFLAGS := -X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36 \
	-X k8s.io/component-base/version.gitTreeState=clean
istio_ldflags = -X istio.io/istio/pkg/version.buildVersion=$(1) -X istio.io/istio/pkg/version.buildTag=$(1) \
	-X istio.io/istio/pkg/version.buildHub=docker.io/istio -X istio.io/istio/pkg/version.buildStatus=Clean \
	-X istio.io/istio/pkg/version.buildGitRevision=$(2)

.PHONY: build
build: ## Build the plugin and its analysis companion into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(PLUGIN) ./cmd/kubectl-istio_upgrade
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w $(BUILD_LDFLAGS)" -o $(ANALYZER) ./cmd/istio-upgrade-analyze

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-22s %s\n", $$1, $$2}'

.PHONY: test unit e2e e2e-istioctl e2e-helm e2e-ambient lint golden
test: lint unit docs-check e2e ## Everything CI runs: lint, unit tests, docs check, e2e on every test-bed profile

unit: ## Unit tests with the race detector (fake clientsets, golden files, recorded syncz)
	CGO_ENABLED=1 $(GO) test -race -count=1 ./...
	cd test/testbed/agent && $(GO) test -count=1 ./...

golden: ## Rewrite golden files after an intended output change
	UPDATE_GOLDEN=1 $(GO) test ./...

lint: ## go vet (plugin, e2e, agent), gofmt, go mod tidy, no step importing another, every e2e scenario listed
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/e2e
	cd test/testbed/agent && $(GO) vet ./...
	hack/step-imports.sh
	hack/e2e-scenarios.sh
	@out=$$(gofmt -l cmd pkg plugins test); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi

e2e: e2e-helm e2e-ambient e2e-istioctl ## The e2e suite on every test-bed profile, shortest first so a failure shows soonest (each: start the bed, run through the real kubectl, stop it)

# e2e_on PROFILE GO-TEST-SELECTION: one profile's bed and its scenarios (TestIstioctl, TestHelm, TestAmbient:
# each an ordered list in test/e2e/scenarios_test.go).
define e2e_on
	@$(TESTBED_ENV) test/testbed/testbed.sh down >/dev/null 2>&1 || true
	@set -e; trap '$(TESTBED_ENV) test/testbed/testbed.sh down' EXIT; \
	TESTBED_PROFILE=$(1) $(TESTBED_ENV) test/testbed/testbed.sh up; \
	$(GO) test -tags e2e -count=1 -timeout 40m -v $(2) ./test/e2e 2>&1 | tee $(TESTBED_DIR)/e2e-$(1).log | grep -E '^\s*(=== RUN|--- |PASS|FAIL|ok|panic)|^\s+\S+_test.go' ; \
	test $${PIPESTATUS[0]} -eq 0
endef

e2e-istioctl: testbed-tools build $(AGENT) ## e2e on the istioctl profile (revision 1-30, tag prod-stable, the repository's fixtures)
	$(call e2e_on,istioctl,-run '^TestIstioctl$$')

e2e-helm: testbed-tools build $(AGENT) ## e2e on the helm profile (seed 000 on Istio's own charts, from the non-revisioned default)
	$(call e2e_on,helm,-run '^TestHelm$$')

e2e-ambient: testbed-tools build $(AGENT) ## e2e on the ambient profile (istio-cni and ztunnel on Istio's charts, rolled node by node)
	$(call e2e_on,ambient,-run '^TestAmbient$$')

.PHONY: docs docs-check
docs: ## Generate docs/cli from the cobra commands, and docs/rbac.md's per-step table from the step registry
	$(GO) run ./hack/gendocs docs/cli docs/rbac.md docs/rbac.md

docs-check: ## Fail when docs/cli or docs/rbac.md's generated table is stale
	@tmp=$$(mktemp -d); mkdir $$tmp/cli; $(GO) run ./hack/gendocs $$tmp/cli docs/rbac.md $$tmp/rbac.md; \
	if ! diff -r $$tmp/cli docs/cli >/dev/null; then echo "docs/cli is stale: run make docs"; diff -r $$tmp/cli docs/cli | head -20; rm -rf $$tmp; exit 1; fi; \
	if ! diff $$tmp/rbac.md docs/rbac.md >/dev/null; then echo "docs/rbac.md is stale: run make docs"; diff $$tmp/rbac.md docs/rbac.md | head -20; rm -rf $$tmp; exit 1; fi; rm -rf $$tmp

.PHONY: dist
PLATFORMS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64
dist: ## Build release archives for every platform and render krew/istio-upgrade.yaml with their sha256
	rm -rf dist && mkdir -p dist
	@for p in $(PLATFORMS); do os=$${p%/*}; arch=$${p#*/}; ext=; [ $$os = windows ] && ext=.exe; \
	  d=dist/kubectl-istio_upgrade_$${os}_$${arch}; mkdir -p $$d; \
	  echo ">> $$os/$$arch"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $$d/kubectl-istio_upgrade$$ext ./cmd/kubectl-istio_upgrade || exit 1; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "-s -w $(BUILD_LDFLAGS)" -o $$d/istio-upgrade-analyze$$ext ./cmd/istio-upgrade-analyze || exit 1; \
	  cp LICENSE $$d/; cp hack/kubectl_complete-istio_upgrade $$d/; \
	  tar -C $$d -czf $$d.tar.gz kubectl-istio_upgrade$$ext istio-upgrade-analyze$$ext kubectl_complete-istio_upgrade LICENSE; rm -rf $$d; \
	done
	$(GO) run ./hack/krewmanifest -version $(VERSION) -template krew/istio-upgrade.yaml.tmpl -dist dist -out krew/istio-upgrade.yaml

# ---- test-bed tools (each from its own helper module under test/testbed/tools) ----
$(K8S_BIN)/.done:
	@echo ">> building Kubernetes $(K8S_VERSION) into $(K8S_BIN)"
	cd test/testbed/tools/k8s && CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(K8S_LDFLAGS)" -o $(K8S_BIN)/ \
		k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
	touch $@

$(KWOK_BIN)/.done:
	@echo ">> building KWOK $(KWOK_VERSION) into $(KWOK_BIN)"
	cd test/testbed/tools/kwok && CGO_ENABLED=0 $(GO) build -trimpath -o $(KWOK_BIN)/ sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl
	touch $@

# etcd 3.6: kube-apiserver 1.36's streaming lists need etcd's watch-progress support, which Debian's 3.4 lacks.
$(ETCD_BIN)/.done:
	@echo ">> building etcd $(ETCD_VERSION) into $(ETCD_BIN)"
	cd test/testbed/tools/etcd && CGO_ENABLED=0 $(GO) build -trimpath -o $(ETCD_BIN)/etcd go.etcd.io/etcd/server/v3
	touch $@

$(HELM_BIN)/.done:
	@echo ">> building helm $(HELM_VERSION) into $(HELM_BIN)"
	cd test/testbed/tools/helm && CGO_ENABLED=0 $(GO) build -trimpath \
		-ldflags "-X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION)" -o $(HELM_BIN)/helm helm.sh/helm/v3/cmd/helm
	touch $@

# Prometheus 3 from its module (no UI assets: the bed and the gates use its HTTP API).
$(PROM_BIN)/.done:
	@echo ">> building Prometheus $(PROM_VERSION) into $(PROM_BIN)"
	cd test/testbed/tools/prometheus && CGO_ENABLED=0 $(GO) build -trimpath -o $(PROM_BIN)/prometheus github.com/prometheus/prometheus/cmd/prometheus
	touch $@

$(ISTIO_OLD_BIN)/.done:
	@echo ">> building istio $(ISTIO_OLD_VERSION) (dev build $(ISTIO_OLD_PSEUDO)) into $(ISTIO_OLD_BIN)"
	cd test/testbed/tools/istio-old && CGO_ENABLED=0 $(GO) build -trimpath \
		-ldflags "$(call istio_ldflags,$(ISTIO_OLD_VERSION),$(ISTIO_OLD_PSEUDO))" -o $(ISTIO_OLD_BIN)/ \
		istio.io/istio/istioctl/cmd/istioctl istio.io/istio/pilot/cmd/pilot-discovery
	touch $@

$(ISTIO_NEW_BIN)/.done:
	@echo ">> building istio $(ISTIO_NEW_VERSION) (dev build $(ISTIO_NEW_PSEUDO)) into $(ISTIO_NEW_BIN)"
	cd test/testbed/tools/istio-new && CGO_ENABLED=0 $(GO) build -trimpath \
		-ldflags "$(call istio_ldflags,$(ISTIO_NEW_VERSION),$(ISTIO_NEW_PSEUDO))" -o $(ISTIO_NEW_BIN)/ \
		istio.io/istio/istioctl/cmd/istioctl istio.io/istio/pilot/cmd/pilot-discovery
	touch $@

.PHONY: testbed-tools
testbed-tools: $(K8S_BIN)/.done $(KWOK_BIN)/.done $(ETCD_BIN)/.done $(HELM_BIN)/.done $(PROM_BIN)/.done $(ISTIO_OLD_BIN)/.done $(ISTIO_NEW_BIN)/.done ## Build (once) every pinned tool the test bed needs

# ---- the test bed ----
TESTBED_ENV := K8S_BIN=$(K8S_BIN) KWOK_BIN=$(KWOK_BIN) ETCD_BIN=$(ETCD_BIN) HELM_BIN=$(HELM_BIN) PROM_BIN=$(PROM_BIN) ISTIO_OLD_BIN=$(ISTIO_OLD_BIN) ISTIO_NEW_BIN=$(ISTIO_NEW_BIN) \
	ISTIO_OLD_VERSION=$(ISTIO_OLD_VERSION) ISTIO_NEW_VERSION=$(ISTIO_NEW_VERSION)
REV ?= 1-31
export REV

$(AGENT): $(shell find test/testbed/agent -name '*.go' -o -name 'go.*')
	cd test/testbed/agent && CGO_ENABLED=0 $(GO) build -trimpath -o $(AGENT) .

.PHONY: testbed-up testbed-down testbed-env testbed-new-revision
testbed-up: testbed-tools build $(AGENT) ## Start the simulated cluster with the old revision and the fixtures (TESTBED_PROFILE=helm: Istio's charts)
	$(TESTBED_ENV) test/testbed/testbed.sh up

testbed-down: ## Stop the simulated cluster; leaves no process or port behind
	@$(TESTBED_ENV) test/testbed/testbed.sh down

testbed-env: ## Print export lines for KUBECONFIG and PATH (kubectl, istioctl-old, istioctl-new, the plugin)
	@$(TESTBED_ENV) test/testbed/testbed.sh env

testbed-new-revision: ## Install the new revision (REV, default 1-31): the new istioctl, or helm install istiod-REV on the helm profile
	$(TESTBED_ENV) test/testbed/testbed.sh new-revision

.PHONY: bench
BENCH_ARGS ?=
bench: testbed-tools build $(AGENT) ## Benchmarks on fresh test beds (istioctl, then ambient for the ztunnel roll): prints the table and writes docs/benchmarks.md (BENCH_ARGS=-proxies 500 ...)
	@$(TESTBED_ENV) test/testbed/testbed.sh down >/dev/null 2>&1 || true
	@set -e; trap '$(TESTBED_ENV) test/testbed/testbed.sh down' EXIT; \
	$(TESTBED_ENV) test/testbed/testbed.sh up; \
	$(TESTBED_ENV) test/testbed/testbed.sh new-revision; \
	$(GO) run ./test/bench -kubeconfig $(TESTBED_DIR)/kubeconfig -bin $(TESTBED_DIR)/bin -out docs/benchmarks.md $(BENCH_ARGS); \
	$(TESTBED_ENV) test/testbed/testbed.sh down; \
	TESTBED_PROFILE=ambient $(TESTBED_ENV) test/testbed/testbed.sh up; \
	$(TESTBED_ENV) test/testbed/testbed.sh new-revision; \
	$(GO) run ./test/bench -ambient -kubeconfig $(TESTBED_DIR)/kubeconfig -bin $(TESTBED_DIR)/bin -out docs/benchmarks.md

.PHONY: demo
demo: testbed-up ## The whole runbook on the simulated cluster (test bed left running; make testbed-down stops it)
	TESTBED_DIR=$(TESTBED_DIR) REV=$(REV) test/demo.sh
	@echo
	@echo "The test bed is still running. Explore it with:"
	@echo "  eval \$$(make -s testbed-env)    # KUBECONFIG, kubectl, istioctl-old/-new and the plugin on PATH"
	@echo "  kubectl istio-upgrade status --proxies"
	@echo "Stop it with: make testbed-down"
