# Quick start: `make demo` (set up, then audit the bundled sample) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint setup clean samples bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,torch]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/sdaudit layers samples/digits-cnn.onnx
	$(BIN)/sdaudit scan samples/digits-cnn.onnx --data samples/digits-train.npz --draws 5 \
		--json demo-report.json

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check sdaudit tests samples bench
	$(BIN)/mypy

samples: $(STAMP)
	$(BIN)/pip install --quiet -e '.[torch]'
	$(BIN)/python samples/make_samples.py

clean:
	rm -rf $(VENV) demo-report.json report.json report.html mlp.json cnn.json compare.html
