# OpenCodeHub — the two quick-start commands are `make run` and `make test`.

PYTHON ?= python3
VENV   := .venv
# The suite runs in one process per core, whole test files at a time (module fixtures such
# as a browser stay in one process); `make test TEST_WORKERS=0` runs it in this process alone.
TEST_WORKERS ?= auto
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-fast lint format install services system-deps constraints clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
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
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

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

## Re-pin constraints.txt to the newest versions pyproject.toml allows (then run `make test`).
constraints:
	rm -rf .venv-constraints
	$(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/python -m pip install --quiet --upgrade pip
	.venv-constraints/bin/python -m pip install --quiet -e '.[test]'
	{ grep '^#' constraints.txt; .venv-constraints/bin/python -m pip freeze --exclude-editable; } \
		> constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .venv-constraints

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-output
