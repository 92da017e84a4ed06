# anchorpay: `make serve` installs and runs the service, `make test` installs and runs every check.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP_RUN  := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test

.PHONY: serve test test-fast lint lint-imports mirror typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(STAMP_RUN)

serve: $(STAMP_RUN)
	@echo "anchorpay is installed as $(abspath $(BIN))/anchorpay (see README)"
	mkdir -p data
	$(BIN)/anchorpay serve

test: $(STAMP_TEST) lint typecheck lint-imports pytest

lint: $(STAMP_TEST)
	$(BIN)/ruff check src adapters scheduler tests bench
	$(BIN)/ruff format --check src adapters scheduler tests bench

# mypy and import-linter cannot follow setuptools' editable finder, so they read a tree of
# symlinks that mirrors the installed package: src/anchorpay + adapters + scheduler as one
# `anchorpay`.
mirror:
	rm -rf build/typecheck && mkdir -p build/typecheck/anchorpay
	for f in src/anchorpay/*; do ln -s ../../../$$f build/typecheck/anchorpay/; done
	ln -s ../../../adapters build/typecheck/anchorpay/adapters
	ln -s ../../../scheduler build/typecheck/anchorpay/scheduler

typecheck: $(STAMP_TEST) mirror
	MYPYPATH=build/typecheck $(BIN)/mypy -p anchorpay

# The layers of DESIGN.md as import-linter contracts ([tool.importlinter] in pyproject.toml).
lint-imports: $(STAMP_TEST) mirror
	cd build/typecheck && PYTHONPATH=. ../../$(BIN)/lint-imports ../../pyproject.toml --no-cache

# Two worker processes (pytest-xdist) by default: each has its own session databases
# (tests/conftest.py), temp folders and ports. PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2

pytest: $(STAMP_TEST)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal

# The unit tier alone: pure tests, no database, no network, no subprocess.
test-fast: $(STAMP_TEST)
	$(BIN)/pytest tests/unit

bench: $(STAMP_TEST)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build data .mypy_cache .pytest_cache .ruff_cache
