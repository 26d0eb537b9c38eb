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

# ArviZ 1.x asks for Python >= 3.12; its code runs on 3.11, so a second environment with it
# installed over that requirement checks bayestensor's ArviZ adapter against both majors.
ARVIZ1_VENV := .venv-arviz1
ARVIZ1_SPEC ?= arviz>=1.3,<2
ARVIZ1_TESTS := tests/test_arviz.py tests/test_report.py tests/test_docs_claims.py

$(ARVIZ1_VENV)/bin/bayestensor: pyproject.toml
	test -x $(ARVIZ1_VENV)/bin/python || $(PYTHON) -m venv $(ARVIZ1_VENV)
	$(ARVIZ1_VENV)/bin/pip install -q --upgrade pip
	$(ARVIZ1_VENV)/bin/pip install -q $(TORCH_SPEC) $(TORCH_INDEX)
	$(ARVIZ1_VENV)/bin/pip install -q -e ".[test]"
	$(ARVIZ1_VENV)/bin/pip install -q --ignore-requires-python "$(ARVIZ1_SPEC)"
	touch $(ARVIZ1_VENV)/bin/bayestensor

.PHONY: install demo test test-arviz1 pyro-port clean
install: $(BIN)/bayestensor

demo: install
	$(BIN)/bayestensor demo

# `-m ""` selects every test: the slow ones and the port of Pyro's tests (`pyro_port`), which
# a plain `pytest` leaves out (pyproject.toml's addopts).
test: install  # every test (about 22 minutes on 2 cores)
	$(BIN)/python -m pytest -q -m ""

test-arviz1: $(ARVIZ1_VENV)/bin/bayestensor  # the ArviZ-facing tests under ArviZ 1.x
	$(ARVIZ1_VENV)/bin/python -c "import arviz, sys; sys.exit(arviz.__version__[0] != '1')"
	$(ARVIZ1_VENV)/bin/python -m pytest -q -m "not pyro_port" $(ARVIZ1_TESTS)

pyro-port: install  # the port of Pyro's known-answer tests alone (about 8 minutes on 2 cores)
	$(BIN)/python -m pytest -q -m pyro_port tests/pyro_suite

clean:
	rm -rf $(VENV) $(ARVIZ1_VENV) build *.egg-info
