# Two commands do all the set-up on a fresh machine that has only python3:
#   make demo   - create .venv, install cellnas, run a DARTS search on the embedded digits data
#   make test   - create .venv, install cellnas with the dev extras, run ruff and pytest
# torch is installed first (TORCH, a CPU build from this project's local wheels; a bare `torch`
# requirement would pull a multi-GB CUDA build); set TORCH= to another spec (or TORCH= to skip) to use
# your own build, and TORCH_PIP to pass pip options such as PyTorch's CPU index.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
# extra pip options for the torch install, e.g. TORCH_PIP="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP ?=
# the suite runs in PYTEST_WORKERS processes (pytest-xdist; each test uses one thread): 2 halves its time on 2 cores
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?=

.PHONY: demo test install dev lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip >/dev/null

$(VENV)/.torch: | $(BIN)/python
	@if [ -n "$(TORCH)" ] && ! $(BIN)/python -c "import torch" 2>/dev/null; then \
		echo "installing $(TORCH)"; $(BIN)/python -m pip install "$(TORCH)" $(TORCH_PIP); fi
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.dev

demo: $(VENV)/.installed
	$(BIN)/cellnas search

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks

test: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(BIN)/cellnas bench search-step --order 1 --baseline

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
