# Quick start: `make demo` (set up, then audit the bundled sample) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# What the demo needs (sdaudit and its runtime dependencies) and what the tests need on top
# (the dev and torch extras). The full stamp implies the base one: `make test` after
# `make demo` adds the extras to the same .venv; `make demo` after `make test` installs nothing.
BASE_STAMP := $(VENV)/.installed-base
STAMP := $(VENV)/.installed
# CI installs the versions the suite last passed with; `make test-latest` tries the newest.
CONSTRAINTS := constraints.txt
LATEST_VENV ?= .venv-latest

.PHONY: demo test test-latest lint setup clean samples bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(BASE_STAMP): pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e .
	touch $(BASE_STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e '.[dev,torch]'
	touch $(STAMP) $(BASE_STAMP)

setup: $(STAMP)

demo: $(BASE_STAMP)
	$(BIN)/sdaudit layers samples/digits-cnn.onnx
	$(BIN)/sdaudit scan samples/digits-cnn.onnx --data samples/digits-train.npz --draws 5 \
		--json demo-report.json

test: $(STAMP)
	$(BIN)/python -m pytest

# The suite against the newest release of every dependency (no constraints), in its own venv.
test-latest:
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/pip install --quiet --upgrade pip
	$(LATEST_VENV)/bin/pip install --quiet --upgrade --upgrade-strategy eager -e '.[dev,torch]'
	$(LATEST_VENV)/bin/pip freeze --exclude-editable > $(LATEST_VENV)/versions.txt
	$(LATEST_VENV)/bin/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check sdaudit tests samples bench
	$(BIN)/mypy

samples: $(STAMP)
	$(BIN)/python samples/make_samples.py

clean:
	rm -rf $(VENV) $(LATEST_VENV) demo-report.json report.json report.html mlp.json cnn.json \
		compare.html
