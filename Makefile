# The two commands: `make demo` and `make test`. Both install what they need first.
SHELL := /bin/bash
VENV := .venv
PYTEST_ARGS ?=

.PHONY: help deps demo test test-fast bench clean

help:
	@echo "make demo   - install what is missing, then run the cachesync story on this machine"
	@echo "make test   - install what is missing, then run the whole test suite"
	@echo "make bench  - run the benchmarks in bench/ (ratios against baselines)"

deps:
	@bash scripts/bootstrap.sh

demo: deps
	@bash scripts/demo.sh

test: deps
	@bash scripts/ensure-dockerd.sh
	$(VENV)/bin/python -m pytest -q -ra $(PYTEST_ARGS)

test-fast: deps
	$(VENV)/bin/python -m pytest -q -ra -m "not docker and not slow" $(PYTEST_ARGS)

bench: deps
	@for b in bench/bench_*.py; do echo "== $$b"; $(VENV)/bin/python $$b || exit 1; done

clean:
	rm -rf .demo .pytest_cache
