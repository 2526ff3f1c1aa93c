# Two entry points for a fresh machine (Python 3.11 + pip): `make build` and `make test`.
# Both create .venv once; the stamp file makes reruns skip the install.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: build test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

build: $(STAMP)
	$(VENV)/bin/mathsynth build

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -rs

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) -m bench.build_scaling
	$(PY) -m bench.verifiers

clean:
	rm -rf $(VENV) data .bench .pytest_cache
