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

# The real-daemon test spends 6-9 minutes waiting for minute ticks: it runs in a pytest of its
# own beside the rest of the suite, and the target fails when either does. The rest is spread
# over the cores by pytest-xdist (one worker per core; it is CPU-bound in one process), slow
# tests first (tests/conftest.py) and work-stealing so that both workers finish together.
# docs/testing.md: the tiers, what takes the time, and how long each took.
DAEMON_TEST := tests/automation/test_daemon.py

# Tiers: `make test` runs every test; `.venv/bin/python -m pytest -m "not slow"` is the fast one for development.
test: install node_modules/.installed /usr/bin/chromium /usr/bin/isql /usr/bin/time postgresql-server
	mkdir -p test-artifacts
	$(BIN)/python -m pytest $(DAEMON_TEST) > test-artifacts/daemon-pytest.log 2>&1 & daemon=$$!; \
	$(BIN)/python -m pytest -n auto --dist worksteal --deselect $(DAEMON_TEST); rest=$$?; \
	wait $$daemon; status=$$?; \
	echo "--- $(DAEMON_TEST) (run beside the rest) ---"; cat test-artifacts/daemon-pytest.log; \
	test $$rest -eq 0 && test $$status -eq 0

ui: install
	mkdir -p $(BSCORE_HOME)/dagster
	test -f $(BSCORE_HOME)/dagster/dagster.yaml || printf 'telemetry:\n  enabled: false\n' > $(BSCORE_HOME)/dagster/dagster.yaml
	DAGSTER_HOME=$(BSCORE_HOME)/dagster $(BIN)/dagster dev -w workspace.yaml

clean:
	rm -rf $(VENV) .bscore
