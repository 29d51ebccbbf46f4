# The two commands of the README:
#   make up    - the whole platform on the embedded, project-local TimescaleDB, with demo traffic
#   make test  - the whole test suite against a real TimescaleDB (what .ci/run calls)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: up test lint bench install system-deps notebooks

up: install
	$(BIN)/auditwatch up

test: install
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/query.py

# JupyterLab on notebooks/ (the optional `notebooks` extra); see README "Notebooks".
notebooks: install
	$(BIN)/pip install -q -e '.[notebooks]'
	$(BIN)/jupyter lab notebooks/

install: $(STAMP) system-deps

# PostgreSQL + TimescaleDB (skipped when an external server is configured); chromium for the dashboard's
# browser tests.
system-deps:
	@bash scripts/install-timescaledb.sh
	@bash scripts/install-nats.sh
	@bash scripts/install-browser.sh
	@bash scripts/install-rsyslog.sh

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing Python dependencies"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)
