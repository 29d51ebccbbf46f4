# The two commands of the README:
#   make up    - the whole platform on the embedded, project-local TimescaleDB, with demo traffic
#   make test  - the whole test suite against a real TimescaleDB (what .ci/run calls)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: up test lint bench install system-deps notebooks lock

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
# browser tests; pango (WeasyPrint) and poppler-utils for the reports; Prometheus and Alertmanager for the
# metrics and alerting tests that drive the real programs.
system-deps:
	@bash scripts/install-timescaledb.sh
	@bash scripts/install-nats.sh
	@bash scripts/install-browser.sh
	@bash scripts/install-reports.sh
	@bash scripts/install-prometheus.sh
	@bash scripts/install-rsyslog.sh

# The exact versions of requirements.lock (hash-checked), then the project itself on top without
# resolving again. After changing dependencies in pyproject.toml run `make lock` and commit both files.
$(STAMP): pyproject.toml requirements.lock
	@echo "==> creating $(VENV) and installing Python dependencies from requirements.lock"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --require-hashes -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	@touch $(STAMP)

# Recompile requirements.lock from pyproject.toml (runtime + dev extra) against PyPI, with hashes.
lock:
	@test -x $(BIN)/pip-compile || { $(PYTHON) -m venv $(VENV) && $(BIN)/pip install -q pip-tools; }
	env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links --index-url https://pypi.org/simple \
		--extra dev --output-file requirements.lock pyproject.toml
