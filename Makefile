# ndpipe: `make demo` and `make test` set everything up on a fresh machine (Python 3.11+).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
NDPIPE := bin/ndpipe

.PHONY: help install demo test lint bench clean

help:
	@echo "make demo    set up, then turn a fixture Auth0 export into a Salesforce-ready CSV"
	@echo "make test    set up, then run the test suite"
	@echo "make lint    ruff (lint + format check) and mypy"
	@echo "make bench   time and memory against jq, gojq, Miller and DuckDB (bench/RESULTS.md)"
	@echo "make install create $(VENV) and install ndpipe with its dev tools"
	@echo "make clean   remove $(VENV), caches and benchmark data"

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	@echo '$$ ndpipe fetch fixtures/users.json.gz | ndpipe select ... | ndpipe escape-csv | ndpipe csv' >&2
	@$(NDPIPE) fetch fixtures/users.json.gz \
	  | $(NDPIPE) select 'Email Address=email' 'Created At=created_at' 'First Name=given_name' 'Last Name=family_name' \
	  | $(NDPIPE) escape-csv \
	  | $(NDPIPE) csv

# The suite runs on every core (pytest-xdist): each test starts its own processes and servers.
test: $(STAMP)
	$(PY) -m pytest -n auto

lint: $(STAMP)
	$(VENV)/bin/ruff check ndpipe tests bench
	$(VENV)/bin/ruff format --check ndpipe tests bench
	$(VENV)/bin/mypy

# DuckDB is an optional peer: without it (no wheel, no network) its rows are skipped with a note.
bench: $(STAMP)
	-$(PY) -m pip install --quiet duckdb
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache bench/data build *.egg-info
