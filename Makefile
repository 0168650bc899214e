# The two commands of the README. Both set up everything they need on a fresh machine
# (Python 3.11, Java 17 and Maven present): the virtualenv, the package, and for `test` the real
# Ignite, Pulsar and Cassandra servers, which it stops again when the tests end.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: serve test unit lint types bench clean

$(STAMP): pyproject.toml setup.py rtanalytics/core/_speedups.c rtanalytics/adapters/memory/_kernel.c
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/rtanalytics serve --port 8000

test: $(STAMP)
	scripts/test

unit: $(STAMP)
	$(VENV)/bin/pytest -m "not integration"

lint: $(STAMP)
	$(VENV)/bin/ruff check rtanalytics tests bench scripts
	$(VENV)/bin/ruff format --check rtanalytics tests bench scripts

types: $(STAMP)
	$(VENV)/bin/mypy

clean:
	scripts/devservices down --wipe || true
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
