# OpenCodeHub — the two quick-start commands are `make run` and `make test`.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-fast lint format install services system-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Run OpenCodeHub on the embedded defaults (SQLite and local storage under ./data).
run: $(STAMP)
	$(BIN)/opencodehub migrate
	$(BIN)/opencodehub serve --skip-migrate

## Install what the tests need, start the services they use, run the whole suite.
test: system-deps services $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/python -m pytest

## The suite on SQLite only, without the slow real-peer tests: a quick local loop.
test-fast: $(STAMP)
	OCH_TEST_DATABASES=sqlite $(BIN)/python -m pytest -m "not slow" -x -q

system-deps:
	bash scripts/install-test-deps.sh

services:
	bash scripts/start-services.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-output
