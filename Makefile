# The two commands of the README. Each bootstraps what a fresh machine lacks (scripts/bootstrap.sh).
# MQLITE_DSN set: everything runs against that server; unset: a throwaway server is started.
VENV := .venv
PY := $(VENV)/bin/python
CLIENTS ?= 64
SWEEP ?= 1,8,32,64
# The peers of `bench --compare` (huey, RQ) and matplotlib: optional; missing ones are reported as skipped.
BENCH_EXTRAS := $(VENV)/.mqlite-bench-extras

.PHONY: bench bench-sweep test test-fast test-cluster lint bootstrap clean

bench: bootstrap $(BENCH_EXTRAS)
	$(VENV)/bin/mqlite bench --clients $(CLIENTS) --compare

bench-sweep: bootstrap $(BENCH_EXTRAS)
	$(VENV)/bin/mqlite bench --scenario pop --compare --sweep $(SWEEP) --plot bench/sweep.png

$(BENCH_EXTRAS): pyproject.toml
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[test,peers,plot]' && touch $@ || \
		echo "mqlite: could not install the bench extras (peers, plot); their rows will say skipped" >&2

test: bootstrap lint
	$(PY) -m pytest

# ruff (style, imports, likely bugs) and mypy (strict on the library; bench and contrib checked loosely).
lint: bootstrap
	$(VENV)/bin/ruff check mqlite tests
	$(VENV)/bin/mypy

test-fast: bootstrap
	$(PY) -m pytest -m "not slow"

# The MariaDB Galera tests alone: one 3-node cluster on loopback, formed once for all of them.
test-cluster: bootstrap
	$(PY) -m pytest -m cluster

bootstrap:
	@scripts/bootstrap.sh

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
