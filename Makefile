# Two entry points a person needs: `make serve` and `make test`. Everything else is a step of those.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FACEVERIFY := $(VENV)/bin/faceverify
MODEL_DIR ?= models/release

.PHONY: setup serve test lint release-model

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

# The release model is built from the weights shipped in face-recognition-models plus the committed
# head and thresholds (training/release/); no network and no dataset are needed.
release-model: $(MODEL_DIR)/saved_model.pb

$(MODEL_DIR)/saved_model.pb: $(VENV)/.installed
	$(FACEVERIFY) export --release --out $(MODEL_DIR)

serve: setup release-model
	FACEVERIFY_MODEL_DIR=$(MODEL_DIR) $(FACEVERIFY) serve

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy service faceverify training

test: setup lint
	$(PY) -m pytest
