"""Enqueueing from SQL (docs/sql.md): the stored procedure `mqlite_push` from the `mariadb` client
and from PyMySQL inside transactions, its checks, one procedure per table, and the documented INSERTs
being the library's own."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

import mqlite
from mqlite import schema, sql
from mqlite.config import DEFAULT_TABLE, parse_dsn

from .conftest import rows
from .helpers import ROOT

CLIENT = shutil.which("mariadb") or shutil.which("mysql")
ER_SIGNAL = 1644


def client(dsn: str, script: str) -> subprocess.CompletedProcess[str]:
    """Run `script` with the mariadb command-line client, as a shell user would (batch mode)."""
    if CLIENT is None:
        pytest.skip("no mariadb/mysql command-line client on this machine")
    s = parse_dsn(dsn)
    host, port = s.hosts[0]
    env = {**os.environ, "MYSQL_PWD": s.password}  # not on the command line
    return subprocess.run(
        [CLIENT, "--batch", "--skip-column-names", f"--host={host}", f"--port={port}", f"--user={s.user}",
         "--default-character-set=utf8mb4", s.database, "-e", script],
        capture_output=True, text=True, env=env, timeout=60,
    )


@pytest.fixture
def py_conn(q: mqlite.Queue, dsn: str) -> Iterator[Any]:
    s = parse_dsn(dsn)
    host, port = s.hosts[0]
    conn = pymysql.connect(host=host, port=port, user=s.user, password=s.password, database=s.database,
                           charset="utf8mb4")
    yield conn
    conn.close()


def test_call_from_the_command_line_client_commits_with_the_transaction(q: mqlite.Queue, dsn: str) -> None:
    done = client(dsn, "CREATE TABLE orders (ref VARCHAR(20)) ENGINE=InnoDB; "
                       "START TRANSACTION; INSERT INTO orders VALUES ('A-1'); "
                       "CALL mqlite_push('receipts', 'order A-1', 0); SELECT LAST_INSERT_ID(); COMMIT;")
    assert done.returncode == 0, done.stderr
    new_id = int(done.stdout.split()[-1])
    message = q.pop("receipts")
    assert message is not None and (message.id, message.body) == (new_id, b"order A-1")


def test_call_from_the_command_line_client_is_undone_by_a_rollback(q: mqlite.Queue, dsn: str, admin) -> None:
    done = client(dsn, "START TRANSACTION; CALL mqlite_push('receipts', 'never', 0); "
                       "SELECT COUNT(*) FROM mqlite_messages; ROLLBACK;")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1"]  # it was there, inside the transaction
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]


def test_bad_input_from_the_command_line_client_is_refused_by_name(q: mqlite.Queue, dsn: str, admin) -> None:
    for call, says in [
        ("CALL mqlite_push('', 'x', 0)", "queue name is empty"),
        ("CALL mqlite_push(NULL, 'x', 0)", "queue name is empty"),
        ("CALL mqlite_push(REPEAT('q', 192), 'x', 0)", "queue name is longer than 191 characters"),
        # The library's rule (config.check_queue): the column ignores trailing spaces in comparisons.
        ("CALL mqlite_push(' ', 'x', 0)", "queue name ends with a space"),
        ("CALL mqlite_push('q ', 'x', 0)", "queue name ends with a space"),
        ("CALL mqlite_push('q', NULL, 0)", "body is NULL"),
        ("CALL mqlite_push('q', 'x', -1)", "delay_seconds must be between 0 and 3153600000"),
        ("CALL mqlite_push('q', 'x', 3153600001)", "delay_seconds must be between 0"),
    ]:
        done = client(dsn, call)
        assert done.returncode == 1 and f"ERROR {ER_SIGNAL} (45000)" in done.stderr, (call, done.stderr)
        assert f"mqlite_push: {says}" in done.stderr, (call, done.stderr)
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]


def test_the_procedure_keeps_the_librarys_limits_at_their_edges(q: mqlite.Queue, dsn: str, admin) -> None:
    done = client(dsn, "CALL mqlite_push(REPEAT('é', 191), 'longest name', 0); "
                       "CALL mqlite_push(' q', 'a leading space is part of a name', NULL); "
                       "CALL mqlite_push('q', 'latest', 3153600000);")
    assert done.returncode == 0, done.stderr
    assert q.pop("é" * 191).body == b"longest name"  # type: ignore[union-attr]
    assert q.pop(" q").body == b"a leading space is part of a name"  # type: ignore[union-attr]
    ((years,),) = rows(admin, "SELECT TIMESTAMPDIFF(YEAR, NOW(), available_at) FROM mqlite_messages WHERE queue = 'q'")
    assert 99 <= years <= 100


def test_call_from_pymysql_commits_and_rolls_back_with_the_app(q: mqlite.Queue, py_conn: Any, admin) -> None:
    cur = py_conn.cursor()
    cur.execute("CREATE TABLE orders (ref VARCHAR(20)) ENGINE=InnoDB")
    py_conn.begin()
    cur.execute("INSERT INTO orders VALUES ('B-1')")
    cur.execute("CALL mqlite_push(%s, %s, %s)", ("receipts", b"\x00\xffbinary", 1.5))
    cur.execute("SELECT LAST_INSERT_ID()")
    ((kept,),) = cur.fetchall()
    py_conn.commit()
    py_conn.begin()
    cur.execute("CALL mqlite_push(%s, %s, %s)", ("receipts", b"rolled back", 0))
    py_conn.rollback()
    assert rows(admin, "SELECT id, body, TIMESTAMPDIFF(MICROSECOND, created_at, available_at) FROM mqlite_messages") \
        == [(kept, b"\x00\xffbinary", 1_500_000)]
    assert rows(admin, "SELECT ref FROM orders") == [("B-1",)]


def test_a_refused_call_leaves_the_transaction_usable(q: mqlite.Queue, py_conn: Any, admin) -> None:
    cur = py_conn.cursor()
    py_conn.begin()
    cur.execute("CALL mqlite_push(%s, %s, %s)", ("receipts", b"first", 0))
    with pytest.raises(pymysql.err.MySQLError) as caught:
        cur.execute("CALL mqlite_push(%s, %s, %s)", ("", b"refused", 0))
    assert caught.value.args[0] == ER_SIGNAL and "queue name is empty" in caught.value.args[1]
    cur.execute("CALL mqlite_push(%s, %s, %s)", ("receipts", b"third", 0))
    py_conn.commit()
    assert [b for (b,) in rows(admin, "SELECT body FROM mqlite_messages ORDER BY id")] == [b"first", b"third"]


def test_each_table_has_its_own_procedure(dsn: str, admin) -> None:
    long_table = "t" * 64
    assert sql.push_procedure(DEFAULT_TABLE) == "mqlite_push"
    assert sql.push_procedure("jobs") == "mqlite_push_jobs"
    name = sql.push_procedure(long_table)
    assert len(name) == 64 and name.startswith("mqlite_push_ttt") and name != sql.push_procedure("t" * 63)
    with mqlite.Queue(dsn, table="jobs") as jobs, mqlite.Queue(dsn, table=long_table) as long:
        jobs.apply_schema()
        long.apply_schema()
        done = client(dsn, f"CALL mqlite_push_jobs('work', 'for jobs', 0); CALL `{name}`('work', 'for long', 0);")
        assert done.returncode == 0, done.stderr
        assert jobs.pop("work").body == b"for jobs"  # type: ignore[union-attr]
        assert long.pop("work").body == b"for long"  # type: ignore[union-attr]
        assert client(dsn, "CALL mqlite_push('work', 'x', 0)").returncode == 1  # no default table here
        schema.drop(admin, "jobs")
    assert rows(admin, "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE()") \
        == [(name,)]


def test_the_procedure_file_applies_again_over_itself(q: mqlite.Queue, admin) -> None:
    migration = next(m for m in schema.migrations() if m.name == "push_procedure")
    statements = migration.statements(DEFAULT_TABLE)
    assert [s.split("(")[0] for s in statements] == ["DROP PROCEDURE IF EXISTS `mqlite_push`",
                                                     "CREATE PROCEDURE `mqlite_push`"]
    for statement in statements:  # what `schema apply` of a recreated version row would do
        admin.cursor().execute(statement)
    assert q.apply_schema() == []
    q.push("x", b"x")


def test_delimiter_lines_split_a_file_like_the_command_line_client() -> None:
    text = (
        "-- a comment; with a semicolon\n"
        "CREATE TABLE a (x INT);\nALTER TABLE a ADD y INT;\n"
        "DELIMITER //\nCREATE PROCEDURE p()\nBEGIN\n  -- inside; dropped\n  SELECT 1;\n  SELECT 2;\nEND //\n"
        "DELIMITER ;\nDROP TABLE a;\n"
    )
    assert schema.split_statements(text) == [
        "CREATE TABLE a (x INT)", "ALTER TABLE a ADD y INT",
        "CREATE PROCEDURE p()\nBEGIN\n  SELECT 1;\n  SELECT 2;\nEND", "DROP TABLE a",
    ]


def _documented_statements() -> list[str]:
    text = (ROOT / "docs" / "sql.md").read_text()
    return [s.strip().rstrip(";") for block in re.findall(r"```sql\n(.*?)```", text, re.S)
            for s in block.split(";\n") if s.strip().startswith("INSERT")]


def test_the_documented_inserts_are_the_ones_the_library_sends() -> None:
    st = sql.statements(DEFAULT_TABLE)
    documented = {s.replace("?", "%s") for s in _documented_statements() if "orders" not in s}
    library = {s.replace("`", "") for s in (st.push, st.push_with, st.set_cap, st.push_keyed)}
    assert documented == library


def test_the_documented_inserts_enqueue_for_consumers(q: mqlite.Queue, py_conn: Any, admin) -> None:
    plain, with_options, cap, keyed = [s.replace("?", "%s") for s in _documented_statements()
                                       if "orders" not in s]
    cur = py_conn.cursor()
    py_conn.begin()
    cur.execute(plain, ("docs", b"plain"))
    cur.execute(with_options, ("docs", b"options", 0, "doc-key", 2, 0))
    py_conn.commit()
    assert rows(admin, "SELECT unique_key, max_attempts FROM mqlite_messages WHERE body = 'options'") == [("doc-key", 2)]
    with pytest.raises(mqlite.errors.Duplicate):
        q.push("docs", b"again", unique_key="doc-key")
    cur.execute(cap, (DEFAULT_TABLE, "doc-cap", 1, 1))
    py_conn.commit()
    cur.execute(keyed, ("docs", b"keyed", 0, None, None, "doc-cap", 0))
    py_conn.commit()
    q.recover_every = 0  # no housekeeping in the pops: the parked one stays parked
    first, second = q.pop("docs"), q.pop("docs")
    assert (first.body, second.body) == (b"plain", b"options")  # type: ignore[union-attr]
    assert q.pop("docs") is None  # parked
    q.recover()  # housekeeping promotes the parked one
    assert q.pop("docs").body == b"keyed"  # type: ignore[union-attr]
