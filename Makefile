# The two commands of the README. Each bootstraps what a fresh machine lacks (scripts/bootstrap.sh).
# MQLITE_DSN set: everything runs against that server; unset: a throwaway server is started.
VENV := .venv
PY := $(VENV)/bin/python
CLIENTS ?= 64

.PHONY: bench test test-fast test-cluster bootstrap clean

bench: bootstrap
	$(VENV)/bin/mqlite bench --clients $(CLIENTS)

test: bootstrap
	$(PY) -m pytest

test-fast: bootstrap
	$(PY) -m pytest -m "not slow"

# The MariaDB Galera tests alone: one 3-node cluster on loopback, formed once for all of them.
test-cluster: bootstrap
	$(PY) -m pytest -m cluster

bootstrap:
	@scripts/bootstrap.sh

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
