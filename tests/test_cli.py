"""The `mqlite` command, through typer's CliRunner and as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import mqlite
from mqlite.cli import app

from .helpers import ROOT

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_schema_apply_then_nothing_to_do(dsn: str) -> None:
    first = invoke("schema", "apply", "--dsn", dsn)
    assert first.exit_code == 0 and "applied 001_messages" in first.output
    again = invoke("schema", "apply", "--dsn", dsn)
    assert again.exit_code == 0 and "nothing to do" in again.output


def test_push_pop_stats_round_trip(dsn: str) -> None:
    invoke("schema", "apply", "--dsn", dsn)
    pushed = invoke("push", "mail", "hello world", "--dsn", dsn)
    assert pushed.exit_code == 0 and int(pushed.output.strip()) > 0
    stats = invoke("stats", "--dsn", dsn, "--json")
    assert json.loads(stats.output)["queues"]["mail"]["ready"] == 1
    popped = invoke("pop", "mail", "--dsn", dsn)
    assert popped.exit_code == 0 and popped.output == "hello world\n"
    empty = invoke("pop", "mail", "--dsn", dsn)
    assert empty.exit_code == 1 and empty.output == ""


def test_dsn_comes_from_the_environment(dsn: str, monkeypatch) -> None:
    monkeypatch.setenv("MQLITE_DSN", dsn)
    assert invoke("schema", "apply").exit_code == 0
    assert invoke("push", "env", "x").exit_code == 0
    assert mqlite.Queue(dsn).size("env") == 1


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["push", "q", "x", "--dsn", "mysql://app:hunter2secret@127.0.0.1:1/db"], "127.0.0.1:1"),
        (["pop", "q", "--dsn", "postgres://app:hunter2secret@h/db"], "scheme"),
        (["push", "", "x", "--dsn", "mysql://app:hunter2secret@127.0.0.1:1/db"], "empty"),
    ],
)
def test_errors_are_one_red_line_without_traceback_or_password(args: list[str], fragment: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mqlite", *args], capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mqlite: ") and fragment in lines[0], done.stderr
    assert "Traceback" not in done.stderr and "hunter2secret" not in done.stderr


def test_missing_schema_is_a_clear_error(dsn: str) -> None:
    result = runner.invoke(app, ["push", "q", "x", "--dsn", dsn])
    assert result.exit_code == 2 and "schema apply" in result.output


def test_push_from_cron_loads_no_benchmark_server_or_web(dsn: str) -> None:
    """`mqlite push` imports only what it runs: not the bench harness, the throwaway server, Rich Live, the web."""
    mqlite.Queue(dsn).apply_schema()
    code = (
        "import sys\n"
        "from mqlite.cli import main\n"
        f"sys.argv = ['mqlite', 'push', 'cron', 'x', '--dsn', {dsn!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "heavy = ('mqlite.bench', 'mqlite.testing', 'mqlite.command', 'rich.live', 'rich.progress',\n"
        "         'starlette', 'uvicorn', 'matplotlib')\n"
        "print(','.join(sorted(m for m in sys.modules if m.startswith(heavy))), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""
    assert mqlite.Queue(dsn).size("cron") == 1
