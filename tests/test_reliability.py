"""Failures kept and retried, delays, unique keys, leases, dropped connections, upgrades."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import MySQLdb
import pytest

import mqlite
from mqlite import schema
from mqlite.config import Settings, parse_dsn
from mqlite.errors import Duplicate, NotClaimed
from mqlite.failure import Backoff

from .conftest import admin_connection, rows
from .helpers import wait_for


def server_now(admin) -> datetime:
    return rows(admin, "SELECT NOW(6)")[0][0]


def test_failing_handler_is_retried_with_backoff_then_failed_then_retried_and_purged(dsn: str, admin) -> None:
    q = mqlite.Queue(dsn, max_attempts=3, backoff=Backoff(base=0.3, factor=1.0, jitter=0.0))
    q.apply_schema()
    q.push("jobs", b"poison")
    for attempt in (1, 2, 3):
        m = wait_for(lambda: q.take("jobs"), timeout=10, what=f"attempt {attempt}")
        assert m.attempts == attempt - 1
        failed_at = server_now(admin)
        q.nack(m, ValueError(f"boom {attempt}"))
        (row,) = rows(admin, "SELECT attempts, last_error, available_at, failed_at FROM mqlite_messages")
        assert row[0] == attempt and row[1].startswith(f"ValueError: boom {attempt}")
        if attempt < 3:
            # Backoff respected: not available before 0.3 s have passed on the server's clock.
            assert (row[2] - failed_at).total_seconds() >= 0.29 and row[3] is None
            assert q.take("jobs") is None
    # After max_attempts: failed, out of the ready set, kept with its error.
    assert q.take("jobs") is None
    stats = q.stats().queues["jobs"]
    assert (stats.ready, stats.delayed, stats.failed, stats.failed_total) == (0, 0, 1, 3)
    (failed,) = q.peek("jobs", failed=True)
    assert failed.failed_at is not None and "boom 3" in failed.last_error and failed.attempts == 3
    assert q.retry_failed("jobs", ids=[failed.id + 1000]) == 0
    assert q.retry_failed("jobs") == 1
    with q.claim("jobs") as again:
        assert again.id == failed.id and again.attempts == 0
        again.fail("gave up on purpose")
    (gave_up,) = q.peek("jobs", failed=True)
    assert gave_up.last_error == "gave up on purpose"
    assert q.purge_failed("jobs", older_than=timedelta(hours=1)) == 0
    assert q.purge_failed("jobs") == 1
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]
    q.close()


def test_traceback_is_kept_with_the_error(q: mqlite.Queue) -> None:
    q.push("jobs", b"x")

    def handler(message: mqlite.Message) -> None:
        raise KeyError("missing-field")

    with pytest.raises(KeyError):
        with q.claim("jobs") as m:
            handler(m)
    (kept,) = q.peek("jobs")
    assert kept.last_error.startswith("KeyError: 'missing-field'")
    assert "Traceback" in kept.last_error and "in handler" in kept.last_error


def test_per_push_max_attempts(dsn: str) -> None:
    q = mqlite.Queue(dsn, max_attempts=5)
    q.apply_schema()
    q.push("jobs", b"once", max_attempts=1)
    with pytest.raises(RuntimeError):
        with q.claim("jobs"):
            raise RuntimeError("only one try")
    assert q.stats().queues["jobs"].failed == 1
    q.close()


def test_release_puts_back_without_counting_an_attempt(q: mqlite.Queue) -> None:
    q.push("jobs", b"later")
    with q.claim("jobs") as m:
        m.release(delay=0)
    with q.claim("jobs") as again:
        assert again.id == m.id and again.attempts == 0
    with pytest.raises(NotClaimed):
        again.release()  # already settled


def test_delay_and_run_at_hide_messages_until_due(q: mqlite.Queue) -> None:
    # Long enough that a loaded machine cannot let them fall due before the checks below.
    q.push("later", b"delayed", delay=2.0)
    q.push("later", b"scheduled", run_at=datetime.now() + timedelta(seconds=2.0))
    q.push("later", b"past", run_at=datetime.now() - timedelta(days=1))
    started = time.monotonic()
    assert q.pop("later").body == b"past"
    assert q.pop("later") is None
    assert q.stats().queues["later"].delayed == 2
    first = wait_for(lambda: q.pop("later"), timeout=10, what="the delayed message")
    second = wait_for(lambda: q.pop("later"), timeout=10, what="the scheduled message")
    assert time.monotonic() - started >= 1.9
    assert {first.body, second.body} == {b"delayed", b"scheduled"}
    with pytest.raises(ValueError):
        q.push("later", b"x", delay=1, run_at=datetime.now())
    with pytest.raises(ValueError):
        q.push("later", b"x", delay=-1)
    with pytest.raises(ValueError):
        q.push("later", b"x", delay=float("nan"))


def test_unique_key_refuses_a_second_push_while_the_first_is_queued(q: mqlite.Queue) -> None:
    first = q.push("orders", b"order 42", unique_key="order-42")
    with pytest.raises(Duplicate) as info:
        q.push("orders", b"order 42 again", unique_key="order-42")
    assert info.value.existing_id == first
    assert q.push("orders", b"again", unique_key="order-42", if_exists="ignore") == first
    assert q.push("other-queue", b"same key elsewhere", unique_key="order-42") != first
    assert q.size("orders") == 1
    q.pop("orders")
    assert q.push("orders", b"new order 42", unique_key="order-42") > first  # gone, so allowed again


class _LoseReplyOnce:
    """Wraps a pooled connection: the first INSERT reaches the server and commits, then the
    client sees 'lost connection' (error 2013), as when the network drops before the reply."""

    def __init__(self, pool, state: dict) -> None:
        self._pool, self._state = pool, state
        self._original = pool.connection

    def __call__(self):
        import contextlib

        state, original = self._state, self._original

        @contextlib.contextmanager
        def connection():
            with original() as conn:
                real_cursor = conn.cursor

                class Cursor:
                    def __init__(self) -> None:
                        self._c = real_cursor()

                    def execute(self, query, args=None):
                        n = self._c.execute(query, args)
                        if query.startswith("INSERT") and not state.get("lost"):
                            state["lost"] = True
                            conn.close()
                            raise MySQLdb.OperationalError(2013, "Lost connection to server during query (injected)")
                        return n

                    def __getattr__(self, name):
                        return getattr(self._c, name)

                proxy = type("Conn", (), {"cursor": lambda self: Cursor(), "__getattr__": lambda self, n: getattr(conn, n)})()
                yield proxy

        return connection()


def test_retried_push_with_unique_key_is_idempotent(q: mqlite.Queue, admin) -> None:
    state: dict = {}
    q._pool.connection = _LoseReplyOnce(q._pool, state)  # type: ignore[method-assign]
    pushed = q.push("orders", b"exactly once", unique_key="order-7")
    assert state["lost"]
    assert rows(admin, "SELECT id, body FROM mqlite_messages") == [(pushed, b"exactly once")]


def test_retried_push_without_unique_key_may_store_twice(q: mqlite.Queue, admin) -> None:
    # The documented at-least-once push: a lost reply after commit means a second copy.
    state: dict = {}
    q._pool.connection = _LoseReplyOnce(q._pool, state)  # type: ignore[method-assign]
    q.push("orders", b"at least once")
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(2,)]


def test_take_and_settle_by_receipt_text(q: mqlite.Queue) -> None:
    q.push_many("jobs", [b"a", b"b"])
    a, b = q.take("jobs"), q.take("jobs")
    assert q.ack(str(a.receipt)) is True
    assert q.ack(str(a.receipt)) is False  # already gone
    assert q.nack(str(b.receipt), "remote worker failed", delay=0) is True
    with q.claim("jobs") as again:
        assert again.id == b.id and again.attempts == 1 and again.last_error == "remote worker failed"
    with pytest.raises(NotClaimed):
        q.ack("not-a-receipt")


def _limited_user(dsn: str, name: str) -> str:
    settings = parse_dsn(dsn)
    admin = admin_connection(dsn)
    cur = admin.cursor()
    cur.execute(f"CREATE USER IF NOT EXISTS '{name}'@'%' IDENTIFIED BY 'pw'")
    cur.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{settings.database}`.* TO '{name}'@'%'")
    admin.close()
    return Settings(name, "pw", settings.hosts, settings.database, settings.unix_socket).url()


def _drop_users(dsn: str, *names: str) -> None:
    admin = admin_connection(dsn)
    for name in names:
        admin.cursor().execute(f"DROP USER IF EXISTS '{name}'@'%'")
    admin.close()


def test_without_process_privilege_only_expired_leases_come_back(dsn: str, admin) -> None:
    mqlite.Queue(dsn).apply_schema()
    a_dsn, b_dsn = _limited_user(dsn, "mq_a"), _limited_user(dsn, "mq_b")
    try:
        a, b = mqlite.Queue(a_dsn, recover_every=0), mqlite.Queue(b_dsn, recover_every=0)
        a.push("jobs", b"long work")
        m = a.take("jobs", lease=1.0)
        report = b.recover()
        assert not report.sees_all_connections and report.total == 0  # B cannot see A: it waits for the lease
        m_lease = rows(admin, "SELECT lease_until FROM mqlite_messages")[0][0]
        assert a.extend(m, 3.0)  # the live consumer keeps its claim for long work
        wait_for(lambda: server_now(admin) > m_lease, what="the first lease to pass")
        assert b.recover().total == 0 and b.pop("jobs") is None
        report = wait_for(lambda: (r := b.recover()).lease_expired and r, timeout=15, what="the lease to expire")
        assert report.lease_expired == 1
        assert a.ack(m) is False  # its claim was taken back: the message will be delivered again
        again = b.pop("jobs")
        assert again.id == m.id and again.attempts == 1 and "lease expired" in again.last_error
        a.close()
        b.close()
    finally:
        _drop_users(dsn, "mq_a", "mq_b")


def test_claim_session_killed_between_claim_and_read(dsn: str, admin) -> None:
    """The UPDATE commits, then the session dies before its SELECT: the rows are orphans, come back by
    recovery, and every message is popped exactly once."""
    q = mqlite.Queue(dsn, recover_every=0.2)
    q.apply_schema()
    ids = q.push_many("jobs", [str(i) for i in range(60)])
    killed: list[int] = []
    original = q._pool.open_session

    def session_killed_after_first_claim(**kw):
        raw = original(**kw)
        real_cursor = raw.cursor

        class Cursor:
            def __init__(self) -> None:
                self._c = real_cursor()

            def execute(self, query, args=None):
                n = self._c.execute(query, args)
                if query.startswith("UPDATE") and "CONNECTION_ID()" in query and n and not killed:
                    killed.append(raw.thread_id())
                    admin.cursor().execute("KILL CONNECTION %s", (raw.thread_id(),))
                return n

            def __getattr__(self, name):
                return getattr(self._c, name)

        raw.cursor = lambda *a, **k: Cursor()  # type: ignore[method-assign]
        return raw

    q._pool.open_session = session_killed_after_first_claim  # type: ignore[method-assign]
    popped: list[int] = []

    def drain() -> bool:
        while (m := q.pop("jobs")) is not None:
            popped.append(m.id)
        return not rows(admin, "SELECT COUNT(*) FROM mqlite_messages")[0][0]

    wait_for(drain, timeout=30, what="every message, including the orphaned ones, to be popped")
    assert killed
    assert sorted(popped) == ids  # each exactly once, none lost
    q.close()


def test_killed_query_of_a_waiting_claim_is_retried(q: mqlite.Queue, dsn: str) -> None:
    q.push_many("jobs", [b"head", b"next"])
    blocker = admin_connection(dsn)
    blocker.autocommit(False)
    bc = blocker.cursor()
    bc.execute("SELECT id FROM mqlite_messages ORDER BY id LIMIT 1 FOR UPDATE")  # lock the head row
    result: list = []
    t = threading.Thread(target=lambda: result.append(q.pop("jobs")))
    t.start()
    admin = admin_connection(dsn)
    waiting = wait_for(
        lambda: rows(admin, "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'UPDATE%%CONNECTION_ID()%%'"),
        what="the claim to wait on the locked row",
    )
    admin.cursor().execute("KILL QUERY %s", (waiting[0][0],))
    blocker.rollback()
    t.join(timeout=30)
    assert not t.is_alive()
    assert result[0].body == b"head"  # retried after the kill, nothing skipped or lost
    assert q.pop("jobs").body == b"next" and q.pop("jobs") is None
    blocker.close()
    admin.close()


def test_upgrade_keeps_rows_pushed_under_the_first_schema(dsn: str, admin) -> None:
    q = mqlite.Queue(dsn)
    with q._pool.connection() as conn:
        assert [m.version for m in schema.apply(conn, q.table, upto=1)] == [1]
    cur = admin.cursor()
    cur.executemany("INSERT INTO mqlite_messages (queue, body) VALUES (%s, %s)",
                    [("old", f"m{i}".encode()) for i in range(1000)])
    applied = q.apply_schema()
    assert [m.version for m in applied] == [m.version for m in schema.migrations()][1:]
    assert q.schema_status().version == schema.latest_version()
    assert q.size("old") == 1000
    bodies = []
    while (m := q.pop("old")) is not None:
        bodies.append(m.body)
    assert bodies == [f"m{i}".encode() for i in range(1000)]  # all there, still in order
    q.close()


def test_paused_queue_hands_out_nothing_but_accepts_pushes(q: mqlite.Queue, dsn: str) -> None:
    q.push("p", b"before")
    other = mqlite.Queue(dsn)  # the pause lives in the database: every process sees it
    other.pause("p")
    assert q.is_paused("p") and not q.is_paused("elsewhere")
    q.push("p", b"during")
    assert q.pop("p") is None
    with q.claim("p") as m:
        assert m is None
    assert q.take("p") is None
    s = q.stats().queues["p"]
    assert s.paused and s.ready == 2
    q.push("elsewhere", b"unaffected")
    assert q.pop("elsewhere").body == b"unaffected"
    other.resume("p")
    assert not q.is_paused("p")
    assert [q.pop("p").body, q.pop("p").body] == [b"before", b"during"]
    other.close()
