# entityseg-data: set-up, main job, tests. Works on a machine with only Python 3.10+ (and, for the
# offline WordNet, Debian's wordnet packages, installed by `setup-system` when apt-get is usable).
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first: the pair that lies on this machine's disk; an already installed torch is kept.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
EXTRAS ?= dev,server
DEMO_DIR ?= demo_workspace
PYTEST_ARGS ?=

.PHONY: setup setup-system demo test test-unit test-fast test-slow lint typecheck format bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

setup: setup-system $(BIN)/python
	@if $(BIN)/python -c "import torch, torchvision" 2>/dev/null; then \
	  echo "torch already installed: $$($(BIN)/python -c 'import torch; print(torch.__version__)')"; \
	else \
	  echo "installing $(TORCH_SPEC)"; $(BIN)/python -m pip install -q $(TORCH_SPEC); \
	fi
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	@# panopticapi as a reference for one evaluation test (not a dependency of the package: its
	@# PyPI packaging pins numpy < 2 although the code runs on numpy 2, hence --no-deps)
	$(BIN)/python -m pip install -q --no-deps 'panopticapi-lite==0.2.0' || \
	  echo "note: panopticapi-lite not installed (its reference test skips)"
	@echo "setup done: $(VENV)"

# Offline WordNet 3.0 for the vocabulary tree (Debian packages; without them the WordNet tests
# skip and names are normalised by rules only), Debian's chromium for the browser tests (driven
# by the playwright package with executable_path; Playwright's browser download is not used;
# without it they skip), and python3-venv where `python3 -m venv` lacks
# ensurepip (bare Debian/Ubuntu). Skipped without apt-get or root.
setup-system:
	@if ! $(PY) -c "import ensurepip" 2>/dev/null && command -v apt-get >/dev/null && \
	  [ "$$(id -u)" = 0 ]; then \
	  apt-get update -q >/dev/null && apt-get install -y -q python3-venv >/dev/null; fi
	@if [ -f /usr/share/wordnet/data.noun ] || [ -f /usr/share/wordnet/dict/data.noun ]; then \
	  echo "wordnet present"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get install -y -q wordnet-base wordnet-sense-index >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null && apt-get install -y -q wordnet-base wordnet-sense-index >/dev/null)) \
	   && echo "installed wordnet" || echo "warning: could not install Debian wordnet packages"; \
	else echo "note: no apt-get/root: no WordNet (names normalised by rules only; WordNet tests skip)"; fi
	@if command -v chromium >/dev/null || [ -x /usr/lib/chromium/chromium ]; then \
	  echo "chromium present"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get install -y -q chromium >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)) \
	   && echo "installed chromium" || echo "warning: could not install Debian chromium"; \
	else echo "note: no apt-get/root: no Chromium (the browser tests skip)"; fi

# The main job: the curation pipeline on bundled sample images with a local Label Studio.
demo: setup
	$(BIN)/entityseg-data demo $(DEMO_DIR) --simulate

# The README's test command and CI: every tier (unit, labelstudio, notebook, browser, slow).
test: setup
	$(BIN)/python -m pytest --tier all $(PYTEST_ARGS)

# Quicker loops while developing: the unit tier alone (no server, kernel or browser; what a plain
# `pytest` runs) on both cores; pick other tiers with --tier (see tests/conftest.py).
# - It runs `make setup` only when the venv was never set up by it or pyproject.toml changed since
#   (a no-op set-up still costs ~10 s: pip resolves every extra and builds the editable wheel).
# - Bytecode caching stays on even where the environment sets PYTHONDONTWRITEBYTECODE (Docker
#   images often do): without it each worker recompiles the package and pytest rewrites the asserts
#   of every test module again, ~5 CPU s per process (caches in the git-ignored __pycache__/).
test-unit: $(VENV)/.test-setup-done
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

$(VENV)/.test-setup-done: pyproject.toml
	$(MAKE) setup
	touch $@

test-fast: test-unit

test-slow: setup
	$(BIN)/python -m pytest --tier slow $(PYTEST_ARGS)

# ruff (lint + format) and the type checker: CI runs this after the tests.
lint:
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

# The type checker alone on src/ (mypy; config in pyproject.toml [tool.mypy]).
typecheck:
	$(BIN)/mypy

format:
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

# A quick benchmark (boundary AP vs pycocotools / faster-coco-eval on 2 images of 12 MP); every
# benchmark's full command and recorded results are in docs/benchmarks.md.
bench: setup
	$(BIN)/python benchmarks/bench_eval.py --images 2

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
