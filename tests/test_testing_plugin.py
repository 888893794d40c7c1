"""mqlite.testing as a user meets it: a project of its own (no conftest, no import of the plugin),
its tests run by pytest in a subprocess, the fixtures found through the `pytest11` entry point."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import MySQLdb
import pytest

from mqlite.config import parse_dsn
from mqlite.testing import admin_connection

from .conftest import rows
from .helpers import ROOT

APP_TESTS = '''
import json, os

import mqlite


def test_a_queue_with_its_schema(mqlite_queue):
    mqlite_queue.push("emails", b"hello")
    assert mqlite_queue.pop("emails").body == b"hello"


def test_a_database_of_its_own(mqlite_dsn, mqlite_server_dsn):
    with open(os.environ["RECORD"], "a") as f:
        f.write(json.dumps({"dsn": mqlite_dsn, "server": mqlite_server_dsn, "pid": os.getpid()}) + "\\n")
    with mqlite.Queue(mqlite_dsn) as q:
        q.apply_schema()
        assert q.stats().queues == {}
'''

OPTIONS_TESTS = '''
import pytest

from mqlite.testing import admin_connection


@pytest.fixture
def mqlite_queue_options():
    return {"table": "app_jobs"}


def test_the_queue_options_can_be_overridden(mqlite_queue, mqlite_dsn):
    mqlite_queue.push("reports", b"monthly")
    conn = admin_connection(mqlite_dsn)
    cur = conn.cursor()
    cur.execute("SELECT queue, body FROM app_jobs")
    assert cur.fetchall() == (("reports", b"monthly"),)
    conn.close()
'''


def readme_example() -> str:
    """The test file the README's "Testing your application" section shows."""
    section = (ROOT / "README.md").read_text().split("## Testing your application with mqlite", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def user_project(tmp_path: Path) -> Path:
    project = tmp_path / "app"
    (project / "tests").mkdir(parents=True)
    (project / "tests" / "test_app.py").write_text(APP_TESTS)
    (project / "tests" / "test_options.py").write_text(OPTIONS_TESTS)
    (project / "tests" / "test_signup.py").write_text(readme_example())
    return project


def run_pytest(project: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # Run from the project's directory, as its developer would: pytest reads no configuration of
    # ours, and mqlite is found as installed (which is where the entry point comes from).
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, "tests"],
        cwd=project, capture_output=True, text=True, timeout=300, env=env,
    )


def database_exists(server_dsn: str, name: str) -> bool:
    conn = admin_connection(server_dsn)
    try:
        return bool(rows(conn, "SHOW DATABASES LIKE %s", name))
    finally:
        conn.close()


def test_a_users_tests_get_the_fixtures_through_the_entry_point(tmp_path: Path, server_dsn: str) -> None:
    project, record = user_project(tmp_path), tmp_path / "record.jsonl"
    env = {**os.environ, "MQLITE_DSN": server_dsn, "RECORD": str(record)}
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    done = run_pytest(project, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout
    [seen] = [json.loads(line) for line in record.read_text().splitlines()]
    assert seen["server"] == server_dsn  # MQLITE_DSN set: its server, no throwaway one
    database = parse_dsn(seen["dsn"]).database
    assert database != parse_dsn(server_dsn).database
    assert not database_exists(server_dsn, database)  # dropped after the test

    # Without the plugin (its entry point's name is `mqlite`) the same tests find no fixtures.
    off = run_pytest(project, "-p", "no:mqlite", env=env)
    assert off.returncode == 1
    assert "fixture 'mqlite_queue' not found" in off.stdout


@pytest.mark.slow
def test_without_mqlite_dsn_the_plugin_starts_a_throwaway_server_and_removes_it(tmp_path: Path) -> None:
    project, record = user_project(tmp_path), tmp_path / "record.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in ("MQLITE_DSN", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")}
    env["RECORD"] = str(record)
    done = run_pytest(project, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout
    [seen] = [json.loads(line) for line in record.read_text().splitlines()]
    # One server for the session, gone with it: nothing listens on its port, its directory is removed.
    with pytest.raises(MySQLdb.OperationalError):
        admin_connection(seen["server"]).close()
    for d in Path(tempfile.gettempdir()).glob("mqlite-server-*"):
        try:
            owner = (d / "owner.pid").read_text()
        except OSError:
            continue
        assert owner != str(seen["pid"]), f"{d} left behind by the user's test run"


TLS_TESTS = '''
def test_the_server_speaks_tls(mqlite_queue, mqlite_dsn, mqlite_server_dsn):
    assert "ssl_mode=VERIFY_IDENTITY" in mqlite_server_dsn and "ssl_ca=" in mqlite_dsn
    assert mqlite_queue.stats().tls_cipher
'''


@pytest.mark.slow
def test_with_mqlite_tls_the_throwaway_server_offers_tls_and_the_fixtures_verify_it(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    project = tmp_path / "app"
    (project / "tests").mkdir(parents=True)
    (project / "tests" / "test_tls.py").write_text(TLS_TESTS)
    env = {k: v for k, v in os.environ.items() if k not in ("MQLITE_DSN", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")}
    done = run_pytest(project, "--mqlite-tls", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
