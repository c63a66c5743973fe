# Entry points. Every target is idempotent and installs what it needs on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
ARGS ?=

.PHONY: help setup test lint format crds bench demo clean

help:  ## list targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

setup:  ## virtualenv with every dependency, pinned (idempotent)
	@bash scripts/setup.sh

test:  ## install services, lint, check generated files, run the whole test suite (ARGS=... for pytest)
	@bash scripts/test.sh $(ARGS)

lint: setup  ## ruff + mypy --strict
	@bash scripts/lint.sh

format: setup  ## apply ruff's fixes and formatting
	@$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

crds: setup  ## regenerate crds/*.yaml and docs/crds.md from the API types
	@$(VENV)/bin/tradeplane crds

bench: setup  ## run every benchmark program; results go to benchmarks/results/
	@set -e; for b in benchmarks/bench_*.py; do OMP_NUM_THREADS=1 $(VENV)/bin/python $$b; done

demo: setup  ## the main job: train two models, run the example desk locally, write the run report (ARGS=...)
	@bash scripts/demo.sh $(ARGS)

clean:  ## remove local state and caches (keeps the virtualenv)
	rm -rf .tradeplane .typecheck .mypy_cache .ruff_cache
