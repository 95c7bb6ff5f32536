# Two entry points: `make demo` (the main job) and `make test` (lint, types, tests).
# Both create .venv on first use and reuse it afterwards.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest docs docs-serve browser postgres bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e '.[dev,docs,tensorboard,balancing,lightning,accelerate,wandb,mlflow,optuna,postgresql]'
	@$(PIP) list 2>/dev/null | grep -iE '^(torch|nvidia)' ; \
	  if $(PIP) list 2>/dev/null | grep -qi '^nvidia'; then echo 'error: a CUDA build was pulled in' >&2; exit 1; fi
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/losskit demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy

# The report's browser test drives Debian's headless Chromium (never a downloaded browser).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the report's browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The study tests start a local PostgreSQL server from Debian's binaries (never a download).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
	  echo "installing Debian's postgresql for the multi-host study test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

pytest: $(STAMP) browser postgres
	$(BIN)/pytest

test: lint typecheck pytest docs

# The documentation site: built into site/ with every warning an error (broken links, a
# docstring that no longer matches its signature); pages under reference/ and gallery/ are
# generated from the registries and examples/ at build time. Nothing loads from the network.
docs: $(STAMP)
	DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs build --strict --site-dir site

docs-serve: $(STAMP)
	DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs serve

bench: $(STAMP)
	$(BIN)/python benchmarks/criterion_overhead.py --quick

clean:
	rm -rf $(VENV) build dist site .mypy_cache .pytest_cache .ruff_cache
