"""What `import mqlite` and the CLI load at start-up: a `mqlite push` from cron pays for no worker,
no benchmark harness and no test tooling (timings in bench/RESULTS.md, "Start-up")."""

from __future__ import annotations

import json
import subprocess
import sys

import mqlite

from .helpers import ROOT

NEVER_AT_IMPORT = ("mqlite.worker", "mqlite.bench", "mqlite.testing", "mqlite.web", "mqlite.contrib", "tenacity",
                   "typer", "rich", "pytest", "matplotlib")


def loaded_after(statement: str, names: tuple[str, ...]) -> list[str]:
    """Which of `names` a fresh interpreter has loaded after running `statement` (its last line of output)."""
    code = f"import json, sys\n{statement}\nprint(json.dumps([n for n in {list(names)!r} if n in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_import_mqlite_loads_only_the_core() -> None:
    assert loaded_after("import mqlite", NEVER_AT_IMPORT) == []


def test_the_cli_loads_neither_the_bench_nor_the_test_tooling() -> None:
    assert loaded_after("import mqlite.cli", ("mqlite.bench", "mqlite.testing", "matplotlib", "pytest")) == []


def test_a_cli_push_loads_neither_the_worker_nor_pydantic(q: mqlite.Queue, dsn: str) -> None:
    # pydantic: typer from 0.29 on imports it to coerce every option (pyproject.toml pins below that).
    # (The bench and the test tooling: test_cli.py's cron test.)
    run = f"from mqlite.cli import main\nsys.argv = ['mqlite', 'push', 'jobs', 'x', '--dsn', {dsn!r}]\n" \
          "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code"
    assert loaded_after(run, ("mqlite.worker", "pydantic")) == []
    assert q.pop("jobs").body == b"x"


def test_the_lazily_loaded_names_are_still_there() -> None:
    from mqlite.worker import Worker, WorkerResult

    assert mqlite.Worker is Worker and mqlite.WorkerResult is WorkerResult
    assert {"Worker", "WorkerResult"} <= set(mqlite.__all__)
    assert loaded_after("import mqlite; mqlite.Worker", ("mqlite.worker",)) == ["mqlite.worker"]
