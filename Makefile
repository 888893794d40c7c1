# The two commands of the README. Each bootstraps what a fresh machine lacks (scripts/bootstrap.sh).
# MQLITE_DSN set: everything runs against that server; unset: a throwaway server is started.
VENV := .venv
PY := $(VENV)/bin/python
CLIENTS ?= 64
SWEEP ?= 1,8,32,64
# The peers of `bench --compare` (huey, RQ) and matplotlib: optional; missing ones are reported as skipped.
BENCH_EXTRAS := $(VENV)/.mqlite-bench-extras

.PHONY: bench bench-sweep test test-fast test-cluster test-faults test-celery-suite lint soak bootstrap clean

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

# The network-fault tests at full length (20 s of load per fault mode; `make test` runs 10 s each),
# printing the figures docs/RELIABILITY.md records.
test-faults: bootstrap
	MQLITE_FAULT_SECONDS=20 $(PY) -m pytest tests/test_faults.py -s -p no:cacheprovider

# Not part of `make test` (about half an hour): Celery's own integration tests (t/integration/
# test_tasks.py, test_canvas.py, from the source distribution of the installed Celery, fetched by
# pip into build/) against mqlite and, as the control, the local Redis (database
# CELERY_SUITE_REDIS_DB, default 13, which must be empty). Counts and differences: docs/celery.md.
test-celery-suite: bootstrap
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,celery-suite]'
	$(PY) scripts/celery_suite.py

# Not part of `make test`: 10 minutes of mixed load on a throwaway server, 4 worker processes (one
# SIGKILLed every 10 s), one server restart; nothing lost, RSS flat, connections bounded
# (tests/test_soak.py; MQLITE_SOAK_SECONDS to change the length). Figures: docs/RELIABILITY.md.
soak: bootstrap
	MQLITE_SOAK=1 $(PY) -m pytest tests/test_soak.py -s -p no:cacheprovider

bootstrap:
	@scripts/bootstrap.sh

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
