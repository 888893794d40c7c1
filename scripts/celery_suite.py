"""Celery's own integration tests (test_tasks.py, test_canvas.py) against mqlite, and against the
local Redis as the control (`make test-celery-suite`; results in docs/celery.md).

The tests come from Celery's source distribution of the installed version, fetched by pip into
build/celery-suite/ (never copied into this repository). Both runs use the same Redis result
backend (Celery's suite needs one; several of its tests read Redis directly), so only the
broker differs. Redis: database CELERY_SUITE_REDIS_DB (default 13), refused unless empty at the
start, flushed (that database only) at the end. mqlite: a database created on MQLITE_DSN's
server for the run and dropped after it.

    python scripts/celery_suite.py [--broker mqlite|redis|both] [--mqlite-settings JSON] [pytest args...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "celery-suite"
FILES = ("t/integration/test_tasks.py", "t/integration/test_canvas.py")


def sdist() -> Path:
    """Celery's source tree of the installed version, downloaded once."""
    import celery

    version = celery.__version__
    tree = WORK / f"celery-{version}"
    if not (tree / "t" / "integration").is_dir():
        WORK.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
                        f"celery=={version}", "-d", str(WORK)], check=True)
        with tarfile.open(WORK / f"celery-{version}.tar.gz") as tar:
            tar.extractall(WORK, filter="data")
    return tree


def rundir(tree: Path, broker: str, settings: dict) -> Path:
    """A directory holding only Celery's `t` package (the installed celery is imported, not the
    sdist's) and the suite's config override file."""
    run = WORK / f"run-{broker}"
    run.mkdir(parents=True, exist_ok=True)
    link = run / "t"
    if not link.exists():
        link.symlink_to(tree / "t")
    # Celery's pytest settings (its test classes are named test_*), from its pyproject.toml.
    (run / "pyproject.toml").write_text((tree / "pyproject.toml").read_text())
    override = {"broker_transport": "mqlite.contrib.kombu:Transport", **settings} if broker == "mqlite" else {}
    (run / "integration-tests-config.json").write_text(json.dumps(override))
    return run


RANK = {"passed": 0, "skipped": 1, "error": 2, "failure": 3}


def outcomes(junit: Path) -> dict[str, str]:
    """Each test's outcome; a test with subtests appears several times: the worst counts."""
    found: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcome = kinds[0] if kinds else "passed"
        if RANK[outcome] >= RANK.get(found.get(name, "passed"), 0):
            found[name] = outcome
    return found


def run(broker: str, tree: Path, redis_db: int, settings: dict, extra: list[str]) -> dict[str, str]:
    from mqlite import Queue
    from mqlite.testing.database import scratch_database

    backend = f"redis://127.0.0.1:6379/{redis_db}"
    junit = WORK / f"junit-{broker}.xml"
    base = os.environ.get("MQLITE_DSN", "mysql://root@127.0.0.1:3306/test")
    with scratch_database(base, name="mqlite_celery_suite") as dsn:
        Queue(dsn).apply_schema()
        env = {**os.environ, "TEST_BROKER": dsn if broker == "mqlite" else backend, "TEST_BACKEND": backend,
               "PYTHONPATH": str(rundir(tree, broker, settings))}
        # Celery's fixtures are a plugin of its own (pytest-celery registers it; loaded by name here).
        cmd = [sys.executable, "-m", "pytest", *FILES, "-p", "no:cacheprovider", "-p", "no:mqlite",
               "-p", "celery.contrib.pytest", "--timeout", "180", f"--junitxml={junit}", "-q", *extra]
        print(f"== {broker}: {' '.join(cmd)}", flush=True)
        subprocess.run(cmd, cwd=rundir(tree, broker, settings), env=env)
    return outcomes(junit)


def summary(results: dict[str, dict[str, str]]) -> None:
    for broker, found in results.items():
        for file in FILES:
            mod = file[:-3].replace("/", ".")
            counts: dict[str, int] = {}
            for name, outcome in found.items():
                if name.startswith(mod + ".") or name.startswith(mod + "::"):
                    counts[outcome] = counts.get(outcome, 0) + 1
            print(f"{broker:7} {file}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    if len(results) == 2:
        (b1, r1), (b2, r2) = results.items()
        print(f"\nDifferences ({b1} vs {b2}):")
        for name in sorted(set(r1) | set(r2)):
            if r1.get(name) != r2.get(name):
                print(f"  {name}: {r1.get(name)} vs {r2.get(name)}")
    (WORK / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True))


def redis_db_is_free(db: int) -> None:
    import redis

    size = redis.Redis(host="127.0.0.1", port=6379, db=db).dbsize()
    if size:
        sys.exit(f"Redis database {db} holds {size} keys: set CELERY_SUITE_REDIS_DB to an empty one")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", choices=("mqlite", "redis", "both"), default="both")
    parser.add_argument("--mqlite-settings", default="{}", metavar="JSON",
                        help='Celery settings for the mqlite run, e.g. \'{"worker_pool_putlocks": false}\'')
    args, extra = parser.parse_known_args()
    db = int(os.environ.get("CELERY_SUITE_REDIS_DB", "13"))
    redis_db_is_free(db)
    tree = sdist()
    results = {}
    import redis

    try:
        for broker in ("mqlite", "redis") if args.broker == "both" else (args.broker,):
            results[broker] = run(broker, tree, db, json.loads(args.mqlite_settings), extra)
            redis.Redis(host="127.0.0.1", port=6379, db=db).flushdb()  # this database only
    finally:
        summary(results)


if __name__ == "__main__":
    main()
