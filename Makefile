# medvl: `make demo` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.medvl-installed
DEMO_WORKSPACE ?= $(CURDIR)/demo-workspace
SUDO := $(shell [ "$$(id -u)" = "0" ] || echo sudo)
ARGS ?=
PYTEST_ARGS ?=

.PHONY: install system-deps demo test test-all wheel-check fuzz bench lint app viewer-assets clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,dev]'
	@touch $(STAMP)

install: $(STAMP)

# Debian packages the browser tests need (Chromium for Playwright).
system-deps:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
		echo "installing chromium (browser tests)"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

demo: install
	$(VENV)/bin/medvl demo --workspace $(DEMO_WORKSPACE) $(ARGS)

app: install
	$(VENV)/bin/medvl app --workspace $(DEMO_WORKSPACE) $(ARGS)

test: install system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

test-all: install system-deps
	$(PY) -m pytest -m "" $(PYTEST_ARGS)

# build the wheel, install it into a fresh virtual environment outside the checkout (dependencies seen from .venv), and
# run `medvl ontology search`, `medvl demo --no-serve` and `medvl app` from another folder (~3 min)
wheel-check: install system-deps
	PY=$(abspath $(PY)) .ci/wheel-check

# property tests with 50x the examples from a random seed (the default run draws the same examples every time)
fuzz: install
	MEDVL_FUZZ=$${MEDVL_FUZZ:-50} $(PY) -m pytest tests/reliability/test_properties.py $(PYTEST_ARGS)

bench: install
	@set -e; for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b; done
	$(PY) benchmarks/summarize.py

# the slide viewer's frontend (OpenSeadragon + medvl's overlay code, bundled by esbuild); the built bundle is committed,
# so only a change to its sources or to package.json needs this (Node 18+ and the npm registry)
VIEWER_FRONTEND := medvl/apps/components/deepzoom
viewer-assets:
	cd $(VIEWER_FRONTEND) && npm ci --no-audit --no-fund && npm run build

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) $(DEMO_WORKSPACE) .pytest_cache
