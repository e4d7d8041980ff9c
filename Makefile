# Two entry points that work on a fresh machine: `make demo` and `make test`.
# torch is installed first and on its own, so that no later install pulls another build.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.skier-installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)  ## install, then train the demo (CNN on digits) and print where the run went
	$(BIN)/skier demo

test: $(STAMP)  ## install, then run the whole test suite (lint, types, import layers included)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/bench_fit.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
