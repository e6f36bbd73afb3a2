# kubectl istio-upgrade: build, test, test bed, demo, docs, dist.
# `make demo` runs the whole upgrade runbook on the simulated cluster; `make test` passes the tests.
SHELL := /bin/bash
.DEFAULT_GOAL := build

MODULE      := github.com/istio-upgrade/kubectl-istio-upgrade
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
GIT_COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS     := -s -w -X $(MODULE)/pkg/cli.version=$(VERSION) -X $(MODULE)/pkg/cli.gitCommit=$(GIT_COMMIT)
GO          ?= go
BIN_DIR     := $(CURDIR)/bin
PLUGIN      := $(BIN_DIR)/kubectl-istio_upgrade

# Heavy test-bed builds are cached outside the checkout (a fresh clone reuses them) and keyed by version.
CACHE_DIR   ?= $(HOME)/.cache/kubectl-istio-upgrade
TESTBED_DIR ?= $(CURDIR)/.testbed
export TESTBED_DIR

K8S_VERSION  := v1.36.3
KWOK_VERSION := v0.8.0
# Development builds of istio.io/istio, stamped as an "old" and a "new" release for the test bed.
ISTIO_OLD_VERSION := 1.30.0
ISTIO_NEW_VERSION := 1.31.0
ISTIO_OLD_PSEUDO  := $(shell awk '$$1=="istio.io/istio"{print $$2}' test/testbed/tools/istio-old/go.mod)
ISTIO_NEW_PSEUDO  := $(shell awk '$$1=="istio.io/istio"{print $$2}' test/testbed/tools/istio-new/go.mod)

K8S_BIN       := $(CACHE_DIR)/k8s-$(K8S_VERSION)
KWOK_BIN      := $(CACHE_DIR)/kwok-$(KWOK_VERSION)
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
build: ## Build the plugin into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(PLUGIN) ./cmd/kubectl-istio_upgrade

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
testbed-tools: $(K8S_BIN)/.done $(KWOK_BIN)/.done $(ISTIO_OLD_BIN)/.done $(ISTIO_NEW_BIN)/.done ## Build (once) every pinned tool the test bed needs
	@command -v etcd >/dev/null || { echo ">> installing etcd-server"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null; }

# ---- the test bed ----
TESTBED_ENV := K8S_BIN=$(K8S_BIN) KWOK_BIN=$(KWOK_BIN) ISTIO_OLD_BIN=$(ISTIO_OLD_BIN) ISTIO_NEW_BIN=$(ISTIO_NEW_BIN) \
	ISTIO_OLD_VERSION=$(ISTIO_OLD_VERSION) ISTIO_NEW_VERSION=$(ISTIO_NEW_VERSION)
REV ?= 1-31
export REV

$(AGENT): $(shell find test/testbed/agent -name '*.go' -o -name 'go.*')
	cd test/testbed/agent && CGO_ENABLED=0 $(GO) build -trimpath -o $(AGENT) .

.PHONY: testbed-up testbed-down testbed-env testbed-new-revision
testbed-up: testbed-tools build $(AGENT) ## Start the simulated cluster with the old revision and the fixtures
	$(TESTBED_ENV) test/testbed/testbed.sh up

testbed-down: ## Stop the simulated cluster; leaves no process or port behind
	@$(TESTBED_ENV) test/testbed/testbed.sh down

testbed-env: ## Print export lines for KUBECONFIG and PATH (kubectl, istioctl-old, istioctl-new, the plugin)
	@$(TESTBED_ENV) test/testbed/testbed.sh env

testbed-new-revision: ## Install the new revision (REV, default 1-31) with the new istioctl
	$(TESTBED_ENV) test/testbed/testbed.sh new-revision
