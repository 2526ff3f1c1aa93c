# Two entry points for a fresh machine (Python 3.11 + pip): `make build` and `make test`.
# Both create .venv once; the stamp file makes reruns skip the install.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TRAIN_STAMP := $(VENV)/.installed-train
# The `train` extra (torch, transformers, trl, peft) for `mathsynth train` / `eval` and their
# tests. torch first, pinned to the CPU build these machines keep on local disk: an unpinned
# torch resolves to a CUDA build of several GB. Override on a GPU box: make test TORCH=torch
TORCH ?= torch==2.13.0

.PHONY: build test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

$(TRAIN_STAMP): $(STAMP)
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev,train]"
	touch $(TRAIN_STAMP)

build: $(STAMP)
	$(VENV)/bin/mathsynth build

test: $(STAMP) $(TRAIN_STAMP)
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
