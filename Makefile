# make train   set up .venv if needed, then train:  python train.py experiment=cifar_pretrain $(ARGS)
# make test    set up .venv if needed, then run the whole test suite
# make test-fast  the suite without the tests marked slow (under a minute on 2 CPU cores)
# make lint    ruff
# make bench   performance benchmark (writes bench/results.json and bench/RESULTS.md)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=

# Use the read-only data set beside the project when it is there (no download needed).
ifneq ($(wildcard ../shared/data/cifar10/train.npz),)
export COLORGAN_DATA_DIR ?= $(abspath ../shared/data)
endif

.PHONY: install train test test-fast lint format bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev,export,demo]"
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(PY) train.py experiment=cifar_pretrain $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) -m colorgan.bench $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
