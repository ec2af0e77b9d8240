# Isthmus: `make demo` and `make test` are all a new checkout needs (DESIGN.md §7).
# Both create .venv with Python >= 3.11 and install the project with its dev extras.

VENV := .venv
BIN := $(VENV)/bin
# Written after a successful install; pyproject.toml changing makes it stale.
STAMP := $(VENV)/.isthmus-installed
# python3.11 first, else python3 (its version is checked below). Override with PYTHON=...
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
# Only the paths that exist: a fresh clone may not have all of them yet.
LINT_PATHS := $(wildcard gateway federation pki isthmus tests bench)
DEMO_ARGS ?=
BENCH_ARGS ?=

.PHONY: venv demo test lint bench bench-smoke compiled clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON)" ]; then \
		echo "make: no python3.11 or python3 on PATH; Isthmus needs Python >= 3.11" >&2; exit 1; \
	fi
	@"$(PYTHON)" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
		echo "make: $(PYTHON) is older than 3.11; set PYTHON=/path/to/python3.11" >&2; exit 1; }
	@# Reuse a working .venv; recreate one that lacks pip or has an old Python.
	@if ! $(BIN)/python -c 'import pip, sys; sys.exit(sys.version_info < (3, 11))' \
			>/dev/null 2>&1; then \
		rm -rf $(VENV); \
		echo "make: creating $(VENV) with $(PYTHON)"; \
		"$(PYTHON)" -m venv $(VENV) || { \
			echo "make: '$(PYTHON) -m venv' failed; on Debian: apt-get install python3-venv" >&2; \
			rm -rf $(VENV); exit 1; }; \
	fi
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	@touch $@

demo: venv
	$(BIN)/isthmus demo $(DEMO_ARGS)

# The whole suite on the checkout, then the end-to-end and limit suites once more on the
# release build, whose compiled modules check types at run time.
test: venv compiled
	$(BIN)/python -m pytest -q -p no:cacheprovider tests
	ISTHMUS_TEST_TREE=$(COMPILED) $(BIN)/python -m pytest -q -p no:cacheprovider \
		tests/gateway/e2e tests/gateway/limits
	@$(MAKE) --no-print-directory lint

lint: venv
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy --strict
	$(BIN)/lint-imports

# The release build: the hot path compiled with mypyc (see setup.py), in its own tree so the
# development checkout stays pure Python. The benchmarks measure this build.
COMPILED := build/compiled
COMPILED_SRC := $(shell find gateway isthmus pki federation -name '*.py' 2>/dev/null) setup.py

compiled: $(COMPILED)/.built

$(COMPILED)/.built: $(STAMP) $(COMPILED_SRC)
	rm -rf $(COMPILED) && mkdir -p $(COMPILED)
	cp -r gateway isthmus pki federation setup.py pyproject.toml $(COMPILED)/
	cd $(COMPILED) && ISTHMUS_COMPILE=1 $(CURDIR)/$(BIN)/python setup.py -q build_ext --inplace \
		> build.log 2>&1 || { tail -30 build.log; exit 1; }
	@touch $@

bench: venv compiled
	$(BIN)/python -m bench --isthmus-tree $(COMPILED) $(BENCH_ARGS)

bench-smoke: venv compiled
	$(BIN)/python -m bench --smoke --isthmus-tree $(COMPILED) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .demo .mypy_cache .ruff_cache .pytest_cache .hypothesis build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
