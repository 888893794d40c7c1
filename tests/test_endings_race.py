"""Races between two endings of one claim: each message leaves exactly one history row."""

from __future__ import annotations

import threading

import MySQLdb

import mqlite
from mqlite import ending

from .conftest import rows
from .helpers import wait_for
from .support.faults import FaultProxy


def _deleting(conn: MySQLdb.Connection) -> int:
    """Sessions of this database running a DELETE now (the ack's, waiting for the other's lock)."""
    return int(rows(conn, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE() "
                    "AND ID <> CONNECTION_ID() AND INFO LIKE 'DELETE%%'")[0][0])


def test_an_ack_racing_another_ending_of_its_claim_leaves_one_history_row(q: mqlite.Queue, admin) -> None:
    # A Worker's heartbeat ends a cancelled message (its 'cancelled' copy and DELETE, one transaction)
    # while the handler acknowledges it: the ack's copy, a non-locking read, still sees the row, its
    # DELETE waits for the other's lock and then finds nothing. Its copy must not stay.
    q.keep_history("jobs")
    mid = q.push("jobs", b"raced")
    m = q.take("jobs")
    assert q.cancel("jobs", mid) == "cancelling"
    st = q._sql
    other = admin.cursor()
    other.execute("START TRANSACTION")
    other.execute(st.history_cancelled, (ending.worker_label(), q.table, *m.receipt.fence()))
    assert other.execute(st.finish_cancelled, m.receipt.fence()) == 1
    results: list[object] = []
    acking = threading.Thread(target=lambda: results.append(q.ack(m)))
    acking.start()
    try:
        with q._pool.connection() as conn:
            wait_for(lambda: _deleting(conn), what="the ack's DELETE waiting for the other ending's lock")
    finally:
        admin.commit()
    acking.join(15)
    assert not acking.is_alive()
    found = rows(admin, "SELECT outcome FROM mqlite_history WHERE table_name = %s AND id = %s", q.table, mid)
    assert found == [("cancelled",)], found
    assert rows(admin, f"SELECT COUNT(*) FROM `{q.table}`") == [(0,)]


def test_a_cancel_whose_commit_reply_is_lost_says_what_it_did(q: mqlite.Queue, dsn: str) -> None:
    # The cancel's COMMIT reaches the server, its reply does not: the retry finds the message gone
    # (the lost try removed it) and must not answer NotFound for a cancel that happened.
    mid = q.push("jobs", b"x")
    with FaultProxy(dsn, "lost_ack") as proxy:
        with mqlite.Queue(proxy.dsn(dsn, read_timeout=5)) as through:
            assert through.size("jobs") == 1
            proxy._faulting = proxy._armed = True  # one fault: the next COMMIT's reply, and no more
            assert through.cancel("jobs", mid) == "cancelled (was ready)"
            assert proxy.counts["lost_ack"] == 1
    assert q.size("jobs") == 0
