# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv
# and install what they need (pinned by constraints.txt) by themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Cached bytecode (__pycache__, ignored by git), even where the environment turns it off:
# every test process and every server a test starts would compile the code again.
unexport PYTHONDONTWRITEBYTECODE
# Test processes: one per core (pytest-xdist); `make unit TEST_WORKERS=0` runs them in one.
TEST_WORKERS ?= auto

.PHONY: install test lint typecheck unit demo bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -n $(TEST_WORKERS)

test: lint typecheck unit

demo: $(STAMP)
	$(BIN)/touchpoint demo

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) touchpoint-data .mypy_cache .ruff_cache .pytest_cache
