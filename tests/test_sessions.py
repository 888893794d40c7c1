"""Claim sessions are shared by every queue name and bounded: a process touching hundreds of queue
names holds at most `pool_size + claim_sessions` server sessions, and an idle claim session is
closed only when it owns nothing."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import mqlite

from .conftest import admin_connection, rows
from .helpers import wait_for


@contextmanager
def peak_sessions(dsn: str) -> Iterator[list[int]]:
    """Samples how many server sessions use the test's database (this one excluded); yields [peak]."""
    conn = admin_connection(dsn)
    cur = conn.cursor()
    cur.execute("SELECT CONNECTION_ID(), DATABASE()")
    me, database = cur.fetchone()
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            cur.execute(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> %s", (database, me)
            )
            peak[0] = max(peak[0], int(cur.fetchone()[0]))
            stop.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        stop.set()
        sampler.join(10)
        conn.close()


def test_five_hundred_queue_names_stay_within_the_session_bound(dsn: str, admin) -> None:
    q = mqlite.Queue(dsn, pool_size=4, recover_every=0)
    q.apply_schema()
    names = [f"tenant-{i}" for i in range(500)]
    handled: list[int] = []
    pushed: list[int] = []
    with peak_sessions(dsn) as peak:
        for name in names:
            pushed += q.push_many(name, ["a", "b"])
        for name in names:
            m = q.pop(name)
            assert m is not None and m.text() == "a"
            handled.append(m.id)
            with q.claim(name) as c:
                assert c is not None and c.text() == "b"
                handled.append(c.id)
        # then eight threads, round robin over every name, popping and claiming again
        for name in names:
            pushed += q.push_many(name, ["c", "d"])
        lock = threading.Lock()

        def work(k: int) -> None:
            for name in names[k::8] * 2:
                if k % 2:
                    m = q.pop(name)
                    if m is not None:
                        with lock:
                            handled.append(m.id)
                else:
                    with q.claim(name) as c:
                        if c is not None:
                            with lock:
                                handled.append(c.id)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
    leftovers = [m.id for name in names for m in q.pop_many(name, 10)]
    counts = Counter(handled + leftovers)
    assert sorted(counts) == sorted(pushed) and max(counts.values()) == 1
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]
    assert peak[0] <= 4 + 16, f"{peak[0]} sessions at the peak"
    assert q._sessions.open <= 8
    q.close()


def live_ids(admin) -> set[int]:
    return {r[0] for r in rows(admin, "SELECT ID FROM information_schema.PROCESSLIST")}


def test_an_idle_claim_session_is_closed_unless_it_owns_rows(dsn: str, admin) -> None:
    q = mqlite.Queue(dsn, pool_size=2, recover_every=0, claim_sessions=2)
    q.apply_schema()
    q._sessions.idle_timeout = 0.05  # seconds before an idle session is retired
    q.push_many("held", ["keep me"])
    held = q.take("held")
    assert held is not None
    # A second claim session, as when two claims of different queues run at the same moment.
    with q._sessions.hold(), q._sessions.hold():
        pass
    assert q._sessions.open == 2

    wait_for(lambda: q._sessions.retire_idle() or q._sessions.open == 1, what="the session owning nothing closed")
    assert q._sessions.open == 1
    assert held.owner in live_ids(admin)  # the one owning the held message stays, however long idle
    assert q.recover().total == 0  # its claim is alive: recovery leaves it alone
    assert held.ack()
    wait_for(lambda: q._sessions.retire_idle(), what="the last session closed once it owns nothing")
    assert q._sessions.open == 0
    wait_for(lambda: held.owner not in live_ids(admin), what="the session gone from the server")
    q.push("held", "again")
    assert q.pop("held").text() == "again"  # a new session opens on demand
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]
    q.close()


def test_a_session_whose_claims_were_acked_elsewhere_is_closed(dsn: str, admin) -> None:
    """A message acknowledged by another process (its receipt handed over) is found gone when the
    session is about to be retired, and the session closes."""
    q = mqlite.Queue(dsn, pool_size=2, recover_every=0, claim_sessions=1)
    q.apply_schema()
    q._sessions.idle_timeout = 0.05
    q.push("elsewhere", "x")
    m = q.take("elsewhere")
    assert m is not None
    other = mqlite.Queue(dsn, pool_size=1)
    assert other.ack(str(m.receipt))
    other.close()
    wait_for(lambda: q._sessions.retire_idle(), what="the session to be retired")
    assert q._sessions.open == 0
    # the server forgets a closed session a moment after the client hung up
    wait_for(lambda: m.owner not in live_ids(admin), what="the session gone from the server")
    q.close()


def test_claim_sessions_must_be_positive(dsn: str) -> None:
    with pytest.raises(ValueError):
        mqlite.Queue(dsn, claim_sessions=0)
