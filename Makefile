# customer-assets: two commands set everything up on a fresh machine.
#   make run   - venv, install, score at the last date in the data, then the newest backtests
#   make test  - install the dev extra, ruff check, pytest
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: run test ui install install-dev lint sql clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

run: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/customer-assets materialize --backtests

test: install-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: install-dev
	$(BIN)/ruff check .

ui: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

# Opens the DuckDB CLI read-only on the serving copy (falls back to the warehouse if it was never published).
sql: install
	$(BIN)/python -m pip install --quiet "duckdb-cli>=1.5,<2"
	@db=$$($(BIN)/python -c "from customer_assets.settings import serving_dir as s; p = s() / 'serving.duckdb'; print(p if p.exists() else '')"); \
	if [ -z "$$db" ]; then db="$${CUSTOMER_ASSETS_DB:-data/warehouse.duckdb}"; fi; \
	echo "Opening $$db (read-only)"; $(BIN)/duckdb -readonly "$$db"

clean:
	rm -rf $(VENV) .dagster_home data/warehouse.duckdb data/warehouse.duckdb.wal
