# Ferry's make targets. Everything a target needs is installed by it,
# idempotently, under ignored folders (.venv/, .cache/).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Strict editable installs link files one by one, so a new module needs the
# install re-run: the stamp depends on every Python file, the console's static files
# (package data, linked the same way) and the metadata.
SOURCES := $(shell find broker operator telemetry kit -name '*.py' -o -name 'py.typed' 2>/dev/null) \
	$(wildcard $(addprefix broker/console/*.,html js css txt md))
STAMP := $(VENV)/.installed

.PHONY: help venv lint typecheck imports postgres envtest tools browser test unit demo bench bench-servers clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml setup.py $(SOURCES)
	$(BIN)/pip install --quiet -e '.[dev,bench]' --config-settings editable_mode=strict
	@touch $@

venv: $(STAMP) ## create .venv and install Ferry (editable) with the dev and bench extras

lint: venv ## ruff, and hadolint for the Dockerfile
	$(BIN)/ruff check .
	$(BIN)/hadolint --no-color --failure-threshold style Dockerfile

typecheck: venv ## mypy --strict over every ferry package, the bench harness and the control plane
	$(BIN)/mypy -p ferry.kit -p ferry.broker -p ferry.operator -p ferry.telemetry -p kubeplane -p ferrydemo -p testsupport
	$(BIN)/mypy bench

imports: venv ## import-linter layer contracts
	$(BIN)/lint-imports

# The telemetry tests start a throwaway PostgreSQL cluster from the server binaries;
# a fresh Debian machine gets them here (only when initdb is missing).
postgres: ## install PostgreSQL server binaries (Debian package) when missing
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; then :; \
	else \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; \
	fi

# etcd, kube-apiserver and kube-controller-manager, built from tests/envtest/go/ once into
# ${FERRY_CACHE:-.cache}/envtest/<kubernetes version>/ and reused after (needs Go).
envtest: venv ## build the envtest control plane once (cached) and print its versions
	$(BIN)/python scripts/controlplane build

# Peers the envtest tiers run beside the control plane, each built from its own Go module
# folder tests/envtest/tools/<name>/ into ${FERRY_CACHE:-.cache}/<name>/<version>/ once.
# Argo CD needs Go 1.27: its go.mod's toolchain line makes the go command fetch go1.27.3
# from the module proxy (GOTOOLCHAIN is set by the build script, nothing else to do).
TOOLS := argocd kustomize kstatus keda

tools: venv ## build the peer tools once (cached): Argo CD, kustomize, kstatus, KEDA
	$(BIN)/python scripts/controlplane tools $(TOOLS)

# The browser tier drives Debian's chromium with Playwright (from PyPI, in the dev extra):
# Playwright's own browser download is never used (only package registries are reached).
browser: ## install Debian's chromium for the browser tier (once)
	@if ! dpkg-query -W -f='$${Status}' chromium 2>/dev/null | grep -q 'install ok installed'; then \
	  echo "installing chromium from Debian"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	fi

# pytest exits 5 when it collected nothing: make treats that as a failure too,
# so an empty suite can never pass.
test: lint typecheck imports postgres bench-servers browser envtest tools ## everything CI runs: lint, types, layers, the whole suite
	$(BIN)/pytest

unit: venv ## the fast tier only
	$(BIN)/pytest tests/unit

# The control plane is built on first use (with progress), like `make envtest` would.
# DEMO_ARGS passes options through, e.g. make demo DEMO_ARGS="--rows 500 --workdir /tmp/d",
# or DEMO_ARGS="--rate 0" for one unpaced pass over the example sample.
demo: venv postgres ## run Ferry's main job: the telemetry pipeline on a local control plane
	$(BIN)/python scripts/demo $(DEMO_ARGS)

# The peers the benchmark compares Ferry with, from Debian (the smoke run in
# `make test` drives every one of them, so it needs them too). Installing never
# starts them: the harness runs its own instances on free loopback ports.
BENCH_SERVERS := redis-server nats-server rabbitmq-server
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

bench-servers: ## install Debian's redis-server, nats-server, rabbitmq-server (once)
	@missing=""; for p in $(BENCH_SERVERS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing from Debian"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# BENCH_ARGS passes options through, e.g. make bench BENCH_ARGS="--quick" or "--runs 5".
bench: venv bench-servers postgres ## Ferry (embedded; on PostgreSQL + a sync standby) vs Redis, NATS (R1, R3), RabbitMQ (1, 3 nodes)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean: ## remove build output (keeps .venv and .cache)
	rm -rf build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
