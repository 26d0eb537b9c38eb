# Two entry points for a fresh machine: `make demo` and `make test`.
# Each creates .venv if missing, installing the CPU build of PyTorch first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=

$(BIN)/bayestensor: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_SPEC) $(TORCH_INDEX)
	$(BIN)/pip install -q -e ".[test,images,ray]"
	touch $(BIN)/bayestensor

.PHONY: install demo test pyro-port clean
install: $(BIN)/bayestensor

demo: install
	$(BIN)/bayestensor demo

test: install  # every test, the slow ones (marked `slow`) included
	$(BIN)/python -m pytest -q -m "not pyro_port"

pyro-port: install  # the full port of Pyro's known-answer tests (about 40 minutes on 2 cores)
	$(BIN)/python -m pytest -q -m pyro_port tests/pyro_suite

clean:
	rm -rf $(VENV) build *.egg-info
