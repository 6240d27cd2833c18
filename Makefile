# The two commands: `make demo` and `make test`. They install everything the project needs
# (Python packages, npm packages, Debian's Chromium, unixODBC and PostgreSQL); the machine
# provides Python 3.11+ with venv and Node.js 20+ with npm.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export BSCORE_HOME ?= $(CURDIR)/.bscore

.PHONY: demo test ui install clean postgresql-server

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); exit 1; }

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/bscore demo

# The UI test drives Debian's Chromium (playwright-core from npm, no browser download).
/usr/bin/chromium:
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium

# pyodbc (Azure SQL) links against unixODBC's driver manager; its tests need it to import.
# An Azure SQL host also installs Microsoft's msodbcsql18, which depends on it (see README).
/usr/bin/isql:
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends unixodbc

# The tests use the PostgreSQL server at BSCORE_TEST_PG (default 127.0.0.1:5432) when one
# answers, and otherwise start their own from Debian's postgresql package (tests/conftest.py).
postgresql-server:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql; }


# bench/fleet_hour.py (and its smoke test) measure peak memory with GNU time.
/usr/bin/time:
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends time

test: install node_modules/.installed /usr/bin/chromium /usr/bin/isql /usr/bin/time postgresql-server
	$(BIN)/python -m pytest

ui: install
	mkdir -p $(BSCORE_HOME)/dagster
	test -f $(BSCORE_HOME)/dagster/dagster.yaml || printf 'telemetry:\n  enabled: false\n' > $(BSCORE_HOME)/dagster/dagster.yaml
	DAGSTER_HOME=$(BSCORE_HOME)/dagster $(BIN)/dagster dev -w workspace.yaml

clean:
	rm -rf $(VENV) .bscore
