"""push(..., connection=…) on the caller's DB-API connection (mysqlclient and PyMySQL), inside the
caller's transaction: invisible until commit, gone on rollback, every option of push, bad input."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import MySQLdb
import pymysql
import pytest

import mqlite
from mqlite.config import parse_dsn
from mqlite.errors import Duplicate, InvalidName, PayloadTooLarge, SchemaMissing, Unavailable

from .conftest import admin_connection, rows
from .helpers import python, wait_for

APP_TABLE = "CREATE TABLE orders (id INT AUTO_INCREMENT PRIMARY KEY, ref VARCHAR(40) NOT NULL UNIQUE) ENGINE=InnoDB"


def mysqldb_connect(dsn: str, **extra: Any) -> Any:
    """An application's own connection: mysqlclient's defaults (autocommit off)."""
    return MySQLdb.connect(charset="utf8mb4", **parse_dsn(dsn).connect_kwargs(), **extra)


def pymysql_connect(dsn: str, **extra: Any) -> Any:
    s = parse_dsn(dsn)
    host, port = s.hosts[0]
    return pymysql.connect(host=host, port=port, user=s.user, password=s.password, database=s.database,
                           charset="utf8mb4", **extra)


@pytest.fixture(params=["mysqldb", "pymysql"])
def app_conn(request: pytest.FixtureRequest, q: mqlite.Queue, dsn: str, admin) -> Iterator[Any]:
    admin.cursor().execute(APP_TABLE)
    conn = (mysqldb_connect if request.param == "mysqldb" else pymysql_connect)(dsn)
    yield conn
    conn.close()


def write_order(conn: Any, ref: str) -> None:
    cur = conn.cursor()
    cur.execute("INSERT INTO orders (ref) VALUES (%s)", (ref,))
    cur.close()


def statements_sent(conn: Any) -> int:
    """The session's statement counter (it counts this SHOW too)."""
    cur = conn.cursor()
    cur.execute("SHOW SESSION STATUS LIKE 'Questions'")
    (_, value), = cur.fetchall()
    cur.close()
    return int(value)


def test_the_message_appears_with_the_commit_and_not_before(q: mqlite.Queue, app_conn: Any, admin) -> None:
    write_order(app_conn, "A-1")
    new_id = q.push("receipts", b"order A-1", connection=app_conn)
    assert q.size("receipts") == 0 and q.peek("receipts") == []  # not committed: nobody sees it
    assert rows(admin, "SELECT COUNT(*) FROM orders") == [(0,)]
    assert app_conn.get_autocommit() is False  # push left the caller's transaction as it was
    app_conn.commit()
    message = q.pop("receipts")
    assert message is not None and (message.id, message.body) == (new_id, b"order A-1")
    assert rows(admin, "SELECT ref FROM orders") == [("A-1",)]


@pytest.mark.parametrize("end", ["commit", "rollback"])
def test_a_consumer_reaching_the_uncommitted_row_gets_what_the_caller_decides(
    q: mqlite.Queue, app_conn: Any, end: str
) -> None:
    # The claim's UPDATE waits on the row lock of the caller's INSERT (MySQL has no SKIP LOCKED
    # for an UPDATE), so a consumer of that queue gets the message the moment the caller
    # commits, or nothing once it rolls back, whichever comes first to this pop.
    new_id = q.push("receipts", b"decided later", connection=app_conn)
    ender = threading.Timer(0.3, getattr(app_conn, end))
    ender.start()
    try:
        message = q.pop("receipts")
    finally:
        ender.join(10)
    assert (message.id if message else None) == (new_id if end == "commit" else None)


def test_a_rollback_takes_the_message_back(q: mqlite.Queue, app_conn: Any, admin) -> None:
    write_order(app_conn, "B-1")
    q.push("receipts", b"order B-1", connection=app_conn)
    q.push_many("receipts", [b"one", b"two"], connection=app_conn)
    app_conn.rollback()
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]
    assert rows(admin, "SELECT COUNT(*) FROM orders") == [(0,)]


def test_a_plain_push_sends_one_statement_on_the_callers_connection(q: mqlite.Queue, app_conn: Any) -> None:
    before = statements_sent(app_conn)
    q.push("receipts", b"x", connection=app_conn)
    assert statements_sent(app_conn) - before == 2  # the INSERT, and the second SHOW
    app_conn.commit()


def test_push_many_in_the_transaction_returns_the_ids_in_order(q: mqlite.Queue, app_conn: Any) -> None:
    bodies = [f"m{i}".encode() for i in range(2500)]  # three INSERTs of at most 1000 rows
    ids = q.push_many("bulk", bodies, connection=app_conn)
    assert q.size("bulk") == 0
    app_conn.commit()
    got = q.pop_many("bulk", 1000) + q.pop_many("bulk", 1000) + q.pop_many("bulk", 1000)  # one commit each
    assert [(m.id, m.body) for m in got] == list(zip(ids, bodies, strict=True))


def test_delay_run_at_and_max_attempts_are_kept(q: mqlite.Queue, app_conn: Any, admin) -> None:
    a = q.push("later", b"delay", delay=600, connection=app_conn)
    b = q.push("later", b"run_at", run_at=datetime.now() + timedelta(hours=2), connection=app_conn)
    c = q.push("later", b"once", max_attempts=1, connection=app_conn)
    app_conn.commit()
    waits = dict(rows(admin, "SELECT id, TIMESTAMPDIFF(SECOND, NOW(6), available_at) FROM mqlite_messages"))
    assert 590 <= waits[a] <= 600 and 7100 <= waits[b] <= 7200 and waits[c] <= 0
    assert rows(admin, "SELECT max_attempts FROM mqlite_messages WHERE id = %s", c) == [(1,)]
    assert q.pop("later").id == c  # type: ignore[union-attr]


def test_duplicate_in_the_same_transaction_leaves_it_usable(q: mqlite.Queue, app_conn: Any, admin) -> None:
    write_order(app_conn, "C-1")
    first = q.push("mail", b"first", unique_key="order-C-1", connection=app_conn)
    with pytest.raises(Duplicate) as caught:
        q.push("mail", b"second", unique_key="order-C-1", connection=app_conn)
    assert caught.value.existing_id == first  # our own, not yet committed
    assert q.push("mail", b"again", unique_key="order-C-1", if_exists="ignore", connection=app_conn) == first
    write_order(app_conn, "C-2")  # the transaction goes on
    app_conn.commit()
    assert rows(admin, "SELECT ref FROM orders ORDER BY ref") == [("C-1",), ("C-2",)]
    assert rows(admin, "SELECT id, body FROM mqlite_messages") == [(first, b"first")]


def test_duplicate_of_a_committed_message_names_it(q: mqlite.Queue, app_conn: Any, admin) -> None:
    existing = q.push("mail", b"pushed elsewhere", unique_key="k")
    write_order(app_conn, "D-1")
    with pytest.raises(Duplicate) as caught:
        q.push("mail", b"mine", unique_key="k", connection=app_conn)
    assert caught.value.existing_id == existing
    app_conn.commit()
    assert rows(admin, "SELECT ref FROM orders") == [("D-1",)]


def test_duplicate_found_though_the_callers_snapshot_predates_it(q: mqlite.Queue, app_conn: Any) -> None:
    cur = app_conn.cursor()
    cur.execute("SELECT COUNT(*) FROM mqlite_messages")  # REPEATABLE READ: the snapshot is taken here
    cur.close()
    existing = q.push("mail", b"committed after the snapshot", unique_key="late")
    with pytest.raises(Duplicate) as caught:
        q.push("mail", b"mine", unique_key="late", connection=app_conn)
    assert caught.value.existing_id == existing
    assert q.push("mail", b"mine", unique_key="late", if_exists="ignore", connection=app_conn) == existing
    app_conn.rollback()


def test_keyed_push_is_promoted_after_the_commit_by_housekeeping(dsn: str, app_conn: Any) -> None:
    with mqlite.Queue(dsn, recover_every=0.05) as q:
        ids = [q.push("exports", f"e{i}".encode(), concurrency_key="user:1", max_running=1, connection=app_conn)
               for i in range(3)]
        # Parked, and invisible to any promotion before the commit. (Not q.recover() here: like any
        # statement that must lock the caller's uncommitted rows, it would wait for the commit.)
        assert q.size("exports") == 0
        app_conn.commit()
        # A plain DB-API connection tells nobody about its commit: consumers' housekeeping promotes.
        first = wait_for(lambda: q.take("exports"), timeout=10, what="the first keyed message promoted")
        assert first.id == ids[0]
        assert q.take("exports") is None and q.recover() is not None and q.take("exports") is None  # the cap: 1
        assert q.ack(first)  # frees the slot and promotes the next
        second = q.take("exports")
        assert second is not None and second.id == ids[1]


def test_keyed_push_on_an_autocommit_connection_is_promoted_at_once(q: mqlite.Queue, dsn: str) -> None:
    conn = mysqldb_connect(dsn, autocommit=True)
    try:
        new_id = q.push("exports", b"now", concurrency_key="user:2", max_running=1, connection=conn)
    finally:
        conn.close()
    q.recover_every = 0  # no housekeeping: the push itself promoted it
    message = q.take("exports")
    assert message is not None and message.id == new_id


def test_an_autocommit_connection_commits_at_once(q: mqlite.Queue, dsn: str) -> None:
    for connect in (mysqldb_connect, pymysql_connect):
        conn = connect(dsn, autocommit=True)
        try:
            q.push("auto", b"x", unique_key=f"{connect.__name__}", connection=conn)
            with pytest.raises(Duplicate):
                q.push("auto", b"x", unique_key=f"{connect.__name__}", connection=conn)
            assert conn.get_autocommit() is True
        finally:
            conn.close()
    assert q.size("auto") == 2


def test_an_unsupported_connection_is_a_type_error_naming_what_is(q: mqlite.Queue) -> None:
    for wrong in (object(), "mysql://root@127.0.0.1/db", q):
        with pytest.raises(TypeError, match="MySQLdb .* PyMySQL, a SQLAlchemy Connection or Session, or a Django"):
            q.push("x", b"x", connection=wrong)
    with pytest.raises(TypeError, match="SQLAlchemy Connection or Session"):
        q.push_many("x", [b"x"], connection=object())


def test_a_connection_to_another_database_is_schema_missing(q: mqlite.Queue, dsn: str, admin) -> None:
    other = f"{parse_dsn(dsn).database}_other"
    admin.cursor().execute(f"CREATE DATABASE `{other}`")
    try:
        conn = mysqldb_connect(parse_dsn(dsn).with_database(other).url())
        try:
            conn.cursor().execute("CREATE TABLE app_rows (id INT PRIMARY KEY) ENGINE=InnoDB")
            conn.cursor().execute("INSERT INTO app_rows VALUES (1)")
            with pytest.raises(SchemaMissing, match="mqlite_messages"):
                q.push("x", b"x", connection=conn)
            with pytest.raises(SchemaMissing, match="mqlite_messages"):
                q.push_many("x", [b"x"], connection=conn)
            conn.commit()  # still usable: the app's row survives
        finally:
            conn.close()
        assert rows(admin, f"SELECT id FROM `{other}`.app_rows") == [(1,)]
    finally:
        admin.cursor().execute(f"DROP DATABASE `{other}`")


def test_bad_names_and_sizes_are_refused_before_anything_is_sent(q: mqlite.Queue, app_conn: Any, admin) -> None:
    (limit,) = rows(admin, "SELECT @@max_allowed_packet")[0]
    write_order(app_conn, "E-1")
    before = statements_sent(app_conn)
    with pytest.raises(InvalidName):
        q.push("", b"x", connection=app_conn)
    with pytest.raises(PayloadTooLarge):
        q.push("big", b"x" * (limit + 1), connection=app_conn)
    with pytest.raises(PayloadTooLarge):
        q.push("big", b"\0" * (limit // 2 + 10), connection=app_conn)  # fits raw, not once escaped
    with pytest.raises(PayloadTooLarge):
        q.push_many("big", [b"small"] * 10 + [b"x" * (limit + 1)], connection=app_conn)
    with pytest.raises(ValueError):
        q.push("x", b"x", delay=-1, connection=app_conn)
    assert statements_sent(app_conn) - before == 1  # only the second SHOW
    app_conn.commit()
    assert rows(admin, "SELECT ref FROM orders") == [("E-1",)]
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]


def test_a_fresh_queue_learns_the_packet_limit_with_one_select_on_the_callers_connection(
    dsn: str, app_conn: Any
) -> None:
    with mqlite.Queue(dsn) as fresh:
        assert fresh._pool.server is None  # never connected itself
        before = statements_sent(app_conn)
        fresh.push("x", b"a", connection=app_conn)
        fresh.push("x", b"b", connection=app_conn)
        assert statements_sent(app_conn) - before == 4  # SELECT @@max_allowed_packet…, 2 INSERTs, SHOW
        assert fresh._pool.server is not None
    app_conn.rollback()


def test_a_closed_connection_is_unavailable(q: mqlite.Queue, dsn: str) -> None:
    for connect in (mysqldb_connect, pymysql_connect):
        conn = connect(dsn)
        conn.close()
        with pytest.raises((Unavailable, TypeError)) as caught:
            q.push("x", b"x", connection=conn)
        assert caught.type is Unavailable, caught.value


def test_a_driver_error_in_the_push_is_an_mqlite_error_and_no_retry(q: mqlite.Queue, app_conn: Any, admin) -> None:
    # Another transaction holds the unique key: the caller's INSERT waits, then times out. The
    # lock wait timeout is transient, but the push must not retry on the caller's connection.
    holder = admin_connection(q.settings.url())
    holder.autocommit(False)
    try:
        q.push("mail", b"held", unique_key="busy", connection=holder)
        cur = app_conn.cursor()
        cur.execute("SET SESSION innodb_lock_wait_timeout = 1")
        cur.close()
        before = statements_sent(app_conn)
        with pytest.raises(mqlite.errors.DatabaseError) as caught:
            q.push("mail", b"mine", unique_key="busy", connection=app_conn)
        assert caught.value.code == 1205 and caught.value.transient
        assert statements_sent(app_conn) - before == 3  # SAVEPOINT, one INSERT (no retry), SHOW
    finally:
        holder.rollback()
        holder.close()
    app_conn.rollback()


def test_a_push_on_a_dbapi_connection_imports_no_framework(q: mqlite.Queue, dsn: str) -> None:
    proc = python(
        "import sys, MySQLdb, mqlite\n"
        "from mqlite.config import parse_dsn\n"
        "q = mqlite.Queue(sys.argv[1])\n"
        "conn = MySQLdb.connect(**parse_dsn(sys.argv[1]).connect_kwargs())\n"
        "q.push('x', b'x', connection=conn); q.push('x', b'y', unique_key='k', connection=conn)\n"
        "conn.commit()\n"
        "print(sorted(m for m in ('sqlalchemy', 'django', 'pymysql') if m in sys.modules))\n",
        dsn,
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.strip() == "[]"
    assert q.size("x") == 2
