# Developer entry points. `make test` is the README's test command and what CI runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
# Pinned compilers of the lock files, so `make lock` is reproducible.
UV_VERSION := 0.13.9
LOCK_FLAGS := --python-version 3.11 --python-platform x86_64-manylinux_2_28 --quiet --no-header --no-annotate

.PHONY: venv venv-infra test lint typecheck unit lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"

# Exact pins, no resolver run at install time: --no-deps installs what the lock names and
# nothing else, and `pip check` proves the set is complete and consistent.
venv: $(BIN)/python
	$(BIN)/pip install --quiet --no-deps -r requirements/dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip check

venv-infra: $(BIN)/python
	$(BIN)/pip install --quiet --no-deps -r requirements/infra.txt
	$(BIN)/pip install --quiet --no-deps -e .

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest

test: lint typecheck unit

lock: $(BIN)/python
	$(BIN)/pip install --quiet "uv==$(UV_VERSION)"
	$(UV) pip compile pyproject.toml --all-extras $(LOCK_FLAGS) -o requirements/dev.txt
	$(UV) pip compile pyproject.toml --extra infra -c requirements/dev.txt $(LOCK_FLAGS) -o requirements/infra.txt

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
