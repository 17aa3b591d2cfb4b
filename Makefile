# `make run` / `make test`: create .venv if missing, install (once; again only when pyproject.toml or the
# installer change), prepare the embedded model (once), then run the app / the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tuitune-installed
PROJECT ?= $(CURDIR)
PYTEST_ARGS ?=
# `make test` runs the suite on TEST_WORKERS pytest-xdist workers (tests waiting on vLLM or training leave a core
# idle); tests sharing a vLLM server or a module's fixtures stay on one worker (tests/conftest.py). 0: one process.
TEST_WORKERS ?= 2

.PHONY: install model run test lint bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml tuitune/install.py | $(BIN)/python
	$(BIN)/python tuitune/install.py .
	touch $(STAMP)

install: $(STAMP)

model: install
	$(BIN)/tuitune models prepare

run: model
	$(BIN)/tuitune --project "$(PROJECT)"

test: model
	$(BIN)/python -m pytest $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadgroup) $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check tuitune tests bench
