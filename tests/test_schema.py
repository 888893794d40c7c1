"""Versioned schema: idempotent apply, per-table versions, the pop uses its index."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import mqlite
from mqlite import schema

from .conftest import rows
from .helpers import ROOT


def test_apply_twice_is_a_no_op_the_second_time(dsn: str, admin) -> None:
    q = mqlite.Queue(dsn)
    first = q.apply_schema()
    assert [m.version for m in first] == [m.version for m in schema.migrations()]
    q.push("keep", b"row")
    assert q.apply_schema() == []
    status = q.schema_status()
    assert status.version == schema.latest_version() and status.pending == []
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(1,)]
    q.close()


def test_each_table_has_its_own_version(dsn: str) -> None:
    a, b = mqlite.Queue(dsn, table="queue_a"), mqlite.Queue(dsn, table="queue_b")
    assert a.apply_schema() and b.schema_status().version == 0
    assert b.apply_schema() and b.schema_status().version == schema.latest_version()
    a.push("x", b"in a")
    assert b.pop("x") is None and a.pop("x").body == b"in a"


def _plan_and_rows(admin, statement: str, params: tuple) -> tuple[dict, str]:
    import json

    cur = admin.cursor()
    cur.execute("EXPLAIN " + statement, params)
    columns = [d[0] for d in cur.description]
    plan = dict(zip(columns, cur.fetchone(), strict=False))
    cur.execute("ANALYZE FORMAT=JSON " + statement.replace("LIMIT %s", "LIMIT 16"), params[:-1])
    return plan, json.dumps(json.loads(cur.fetchone()[0]))


@pytest.mark.parametrize("levels", [(0,), tuple(range(-5, 5))], ids=["one priority", "ten priorities"])
def test_claim_is_an_index_range_scan_past_delayed_and_failed_rows(q: mqlite.Queue, admin, levels) -> None:
    for p in levels:
        q.push_many("a", [b"x"] * (2000 // len(levels)), priority=p)
        for _ in range(5):
            q.push("a", b"later", delay=3600, priority=p)
    q.push_many("b", [b"y"] * 2000)
    admin.cursor().execute("UPDATE mqlite_messages SET available_at = NULL, failed_at = NOW(6) WHERE id % 7 = 0")
    admin.cursor().execute("ANALYZE TABLE mqlite_messages")
    statement = q._sql.in_list(q._sql.claim_levels, len(levels))
    plan, analyzed = _plan_and_rows(admin, statement, (30_000_000, "a", *levels, q.table, "a", 16))
    assert plan["key"] == "mqlite_ready" and plan["type"] == "range", plan
    assert "filesort" not in (plan.get("Extra") or ""), plan
    # Ranges bounded by available_at <= NOW() per priority: the claim reads as many rows as it takes.
    assert '"r_rows": 16' in analyzed, analyzed
    # The priorities come from a loose index scan, one dive each.
    cur = admin.cursor()
    cur.execute("EXPLAIN " + q._sql.levels, ("a", 65))
    columns = [d[0] for d in cur.description]
    plan = dict(zip(columns, cur.fetchone(), strict=False))
    assert "Using index for group-by" in (plan.get("Extra") or ""), plan


def test_claim_over_many_priorities_walks_one_range_without_filesort(q: mqlite.Queue, admin) -> None:
    for p in range(70):
        q.push_many("a", [b"x"] * 20, priority=p)
    admin.cursor().execute("ANALYZE TABLE mqlite_messages")
    plan, _ = _plan_and_rows(admin, q._sql.claim, (30_000_000, "a", q.table, "a", 16))
    assert plan["key"] == "mqlite_ready" and plan["type"] in ("range", "ref"), plan
    assert "filesort" not in (plan.get("Extra") or ""), plan
    # (ANALYZE ran the claim: it took the first 16 rows.)
    assert [m.priority for m in q.pop_many("a", 30)] == [0] * 4 + [1] * 20 + [2] * 6


@pytest.mark.slow
def test_schema_files_ship_in_a_non_editable_install(dsn: str, tmp_path: Path) -> None:
    # Build a wheel and install it (not the source tree) into a folder of its own, then run it
    # from a directory with no schema/ beside it.
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheel_dir), str(ROOT)],
                   check=True, timeout=300)
    wheel = next(wheel_dir.glob("mqlite-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run([sys.executable, "-m", "mqlite", "schema", "apply", "--dsn", dsn, "--json"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert '"version": %d' % schema.latest_version() in done.stdout
    where = subprocess.run([sys.executable, "-c", "import mqlite.schema as s; print(s.schema_dir())"],
                           capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60).stdout
    assert where.strip() == str(target / "mqlite" / "_schema")


def test_the_wake_look_reads_one_head_per_priority_without_filesort(q: mqlite.Queue, admin) -> None:
    for p in (-1, 0):
        q.push_many("a", [b"x"] * 500, priority=p)
        for _ in range(20):
            q.push("a", b"later", delay=3600, priority=p)
    admin.cursor().execute("ANALYZE TABLE mqlite_messages")
    plan, analyzed = _plan_and_rows(admin, q._sql.wake_wait(1) + " LIMIT %s", (1.0, "a", q.table, "a", 1))
    assert "filesort" not in analyzed, analyzed
