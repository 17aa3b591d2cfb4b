# `make run` / `make test`: create .venv if missing, install (once; again only when pyproject.toml or the
# installer change), prepare the embedded model (once), then run the app / the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tuitune-installed
PROJECT ?= $(CURDIR)
PYTEST_ARGS ?=

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
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check tuitune tests bench
