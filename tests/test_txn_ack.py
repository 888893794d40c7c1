"""ack(message, connection=…) and message.ack(connection=…): the fenced DELETE in the caller's
transaction, so the handler's writes and the acknowledgement commit together, on DB-API connections
(mysqlclient, PyMySQL) and SQLAlchemy; claim blocks and Workers that acknowledged that way."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

import mqlite
from mqlite.errors import NotClaimed

from .conftest import rows
from .test_txn_push import APP_TABLE, mysqldb_connect, pymysql_connect, write_order
from .test_txn_sqlalchemy import Base, Order, engine_url


@pytest.fixture(params=["mysqldb", "pymysql"])
def app_conn(request: pytest.FixtureRequest, q: mqlite.Queue, dsn: str, admin) -> Iterator[Any]:
    admin.cursor().execute(APP_TABLE)
    conn = (mysqldb_connect if request.param == "mysqldb" else pymysql_connect)(dsn)
    yield conn
    conn.close()


def processed(q: mqlite.Queue, queue: str) -> int:
    q._counters.flush()
    stats = q.stats().queues.get(queue)
    return stats.processed if stats else 0


def test_the_ack_commits_with_the_handlers_writes(q: mqlite.Queue, app_conn: Any, admin) -> None:
    q.push("jobs", b"job")
    message = q.take("jobs")
    write_order(app_conn, "A-1")
    assert q.ack(message, connection=app_conn) is True
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(1,)]  # not committed yet
    app_conn.commit()
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]
    assert rows(admin, "SELECT ref FROM orders") == [("A-1",)]
    assert processed(q, "jobs") == 1


def test_a_rolled_back_ack_leaves_the_message_to_come_back(q: mqlite.Queue, dsn: str, app_conn: Any) -> None:
    q.push("jobs", b"job")
    message = q.take("jobs")
    write_order(app_conn, "B-1")
    message.ack(connection=app_conn)
    app_conn.rollback()
    with pytest.raises(NotClaimed):
        message.ack()  # settled as far as this consumer is concerned
    q.close()  # its claim session ends: the claim is an orphan now
    with mqlite.Queue(dsn) as again:
        again.recover()
        back = again.take("jobs")
        assert back is not None and back.id == message.id and back.attempts == 1


def test_a_lost_claim_raises_not_claimed_and_the_transaction_goes_on(
    q: mqlite.Queue, app_conn: Any, admin
) -> None:
    q.push("jobs", b"job")
    message = q.take("jobs")
    assert q.release(str(message.receipt))  # the claim is lost (as after a recovery)
    retaken = q.take("jobs")
    assert retaken is not None and retaken.id == message.id
    write_order(app_conn, "C-1")
    with pytest.raises(NotClaimed, match="roll back"):
        message.ack(connection=app_conn)
    app_conn.commit()  # the caller could go on (here it commits its own row)
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(1,)]  # still the re-taker's
    assert q.ack(retaken)
    assert processed(q, "jobs") == 1


def test_ack_by_receipt_in_the_transaction(q: mqlite.Queue, app_conn: Any, admin) -> None:
    q.push("jobs", b"job", concurrency_key="k")
    q.push("jobs", b"next", concurrency_key="k")
    q.recover_every = 0
    q.recover()
    message = q.take("jobs")
    assert message is not None and q.take("jobs") is None  # the cap: one at a time
    assert q.ack(str(message.receipt), connection=app_conn)
    app_conn.commit()
    q.recover()  # a plain connection tells nobody of its commit: housekeeping promotes the next
    assert q.take("jobs").body == b"next"  # type: ignore[union-attr]


def test_a_claim_block_acked_in_the_transaction_does_not_ack_again(q: mqlite.Queue, app_conn: Any) -> None:
    q.push("jobs", b"job")
    with q.claim("jobs") as message:
        write_order(app_conn, "D-1")
        message.ack(connection=app_conn)
        app_conn.commit()
    assert q.size("jobs") == 0 and q.peek("jobs") == []
    assert processed(q, "jobs") == 1  # once: the block's exit did not count a second ack


def test_a_claim_block_that_raises_after_a_rolled_back_ack_records_the_failure(
    q: mqlite.Queue, app_conn: Any, admin
) -> None:
    q.push("jobs", b"job")
    with pytest.raises(RuntimeError, match="after the ack"):
        with q.claim("jobs") as message:
            try:
                write_order(app_conn, "E-1")
                message.ack(connection=app_conn)
                raise RuntimeError("handler failed after the ack")
            except BaseException:
                app_conn.rollback()
                raise
    ((attempts, error),) = rows(admin, "SELECT attempts, last_error FROM mqlite_messages")
    assert attempts == 1 and "after the ack" in error  # back after the backoff, like any failure
    assert rows(admin, "SELECT COUNT(*) FROM orders") == [(0,)]


def test_a_claim_block_that_raises_after_a_committed_ack_leaves_it_done(q: mqlite.Queue, app_conn: Any) -> None:
    q.push("jobs", b"job")
    with pytest.raises(RuntimeError):
        with q.claim("jobs") as message:
            message.ack(connection=app_conn)
            app_conn.commit()
            raise RuntimeError("after the commit")
    assert q.peek("jobs") == [] and processed(q, "jobs") == 1


def test_a_claim_block_inside_the_open_transaction_does_not_wait_for_it(
    q: mqlite.Queue, app_conn: Any, admin
) -> None:
    q.push("jobs", b"job")
    began = time.monotonic()
    with pytest.raises(RuntimeError):
        with q.claim("jobs") as message:
            message.ack(connection=app_conn)
            raise RuntimeError("leaves the block with the caller's transaction still open")
    assert time.monotonic() - began < 5  # no wait on the caller's row lock
    app_conn.commit()  # the transaction around the block decides: committed, done
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]


def test_another_consumer_waits_for_the_commit_of_a_transactional_ack(q: mqlite.Queue, app_conn: Any) -> None:
    # Why an acknowledgement belongs at the end of the transaction: its row lock holds up the
    # claims of that queue until the commit (they walk the queue from its head).
    q.push_many("jobs", [b"first", b"second"])
    first = q.take("jobs")
    q.ack(first, connection=app_conn)
    committer = threading.Timer(0.3, app_conn.commit)
    committer.start()
    try:
        second = q.take("jobs")
    finally:
        committer.join(10)
    assert second is not None and second.body == b"second"


def test_a_worker_whose_handler_acks_in_its_transaction(q: mqlite.Queue, dsn: str, admin) -> None:
    admin.cursor().execute(APP_TABLE)
    q.push_many("jobs", [f"job-{i}" for i in range(6)])
    local = threading.local()

    def handler(message: mqlite.Message) -> None:
        conn = getattr(local, "conn", None) or mysqldb_connect(dsn)
        local.conn = conn
        write_order(conn, message.text())
        message.ack(connection=conn)  # last, right before the commit
        conn.commit()

    result = mqlite.Worker(q, ["jobs"], handler, concurrency=2, until_empty=True, handle_signals=False).run()
    assert (result.processed, result.failed, result.reason) == (6, 0, "empty")
    assert sorted(r for (r,) in rows(admin, "SELECT ref FROM orders")) == [f"job-{i}" for i in range(6)]
    assert q.peek("jobs") == [] and processed(q, "jobs") == 6


def test_ack_in_a_sqlalchemy_session_counts_only_once_committed(q: mqlite.Queue, dsn: str, admin) -> None:
    engine = create_engine(engine_url(dsn))
    Base.metadata.create_all(engine)
    try:
        q.push_many("jobs", [b"kept", b"rolled back"])
        kept, undone = q.take("jobs"), q.take("jobs")
        with Session(engine) as session, session.begin():
            session.add(Order(ref="F-1"))
            q.ack(kept, connection=session)
            assert processed(q, "jobs") == 0  # not before the commit
        with pytest.raises(RuntimeError):
            with Session(engine) as session, session.begin():
                session.add(Order(ref="F-2"))
                undone.ack(connection=session)
                raise RuntimeError
        assert processed(q, "jobs") == 1
        assert rows(admin, "SELECT ref FROM orders") == [("F-1",)]
        assert [m.id for m in q.in_progress("jobs")] == [undone.id]  # still claimed, not lost
    finally:
        engine.dispose()
