# edgenode: `make demo` runs the main job, `make test` runs the checks and tests.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup demo test test-fast test-slow lint typecheck bench clean

setup:
	@./scripts/setup.sh

demo: setup
	$(VENV)/bin/simnet demo

lint: setup
	$(VENV)/bin/ruff check edgenode ledger federated simnet tests benchmarks firmware

typecheck: setup
	$(VENV)/bin/mypy

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

test: lint typecheck test-fast

test-slow: setup
	@./scripts/setup.sh --firmware
	$(PY) -m pytest -q -m slow

BENCH_ARGS ?=
bench: setup
	@for f in benchmarks/bench_*.py; do echo "# $$f" >&2; $(PY) $$f $(BENCH_ARGS) || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
