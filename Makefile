# One command each for a fresh machine: `make demo` (the built-in HIR run), `make test` (the
# fast tier, for every change) and `make test-all` (everything, as CI runs it).
VENV ?= .venv
PYTHON := $(VENV)/bin/python
# torch first and pinned: an unpinned torch can pull several GB of CUDA packages.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup demo test test-all lint bench-tasks gpu-bundle

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet "$(TORCH_SPEC)"
	$(PYTHON) -m pip install --quiet -e ".[dev]"
	touch $@

demo: setup
	$(VENV)/bin/hir demo --output_dir runs/demo

test: setup
	$(PYTHON) -m pytest tests -m "not slow" --durations=10

# The tests that start processes (launches, kills, signals) too.
test-all: setup
	$(PYTHON) -m pytest tests --durations=10

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks && $(VENV)/bin/ruff format --check src tests benchmarks

# What the GPU check (benchmarks/gpu_check.sh) needs on a GPU machine without network.
gpu-bundle: setup
	$(PYTHON) benchmarks/gpu_bundle.py --output .gpu-bundle
