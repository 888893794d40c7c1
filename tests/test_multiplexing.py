"""Claims behind connection poolers: a multiplexing one is detected and refused, a pinning one works."""

from __future__ import annotations

import pytest

import mqlite
import mqlite.config
from mqlite.errors import ConfigError, Multiplexed

from .conftest import rows
from .helpers import wait_for
from .support.multiplexer import Multiplexer, Renumbering


def test_a_claim_through_a_multiplexer_is_refused_and_nothing_is_lost(q: mqlite.Queue, dsn: str, admin) -> None:
    if not Multiplexer.usable(dsn):
        pytest.skip("the multiplexing relay replays a login, which needs an account without a password")
    ids = q.push_many("jobs", [f"job {i}" for i in range(10)])
    with Multiplexer(dsn) as mux:
        muxed = mqlite.Queue(mux.dsn(dsn), recover_every=0)
        for verb in (lambda: muxed.take("jobs"), lambda: muxed.pop("jobs"), lambda: muxed.take_many("jobs", 5)):
            with pytest.raises(ConfigError, match="connection multiplexing") as refused:
                verb()
            assert isinstance(refused.value, Multiplexed) and not refused.value.transient
        assert mux.statements > 0
        # Nothing was handed out and nothing deleted: every row is still in the table.
        assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(10,)]
        muxed.close()
    # What the refused claims tagged belongs to server sessions that closed with the relay's:
    # recovery returns it (at once with the PROCESS privilege, else when the lease runs out),
    # and every message is delivered once.
    wait = 15 if q.recover().sees_all_connections else mqlite.config.DEFAULT_LEASE + 15
    wait_for(lambda: q.recover() is not None and rows(
        admin, "SELECT COUNT(*) FROM mqlite_messages WHERE owner <> 0") == [(0,)], timeout=wait,
        what="the refused claims to come back")
    assert sorted(m.id for m in q.pop_many("jobs", 20)) == ids


def test_a_pinning_pooler_with_its_own_connection_ids_works(q: mqlite.Queue, dsn: str, admin) -> None:
    """Behind a pooler that pins sessions but numbers its clients itself, the claim goes by the
    server's CONNECTION_ID(): claims read back, acks settle, and an idle claim session retires."""
    ids = q.push_many("jobs", [f"job {i}" for i in range(6)])
    with Renumbering(dsn) as relay:
        pinned = mqlite.Queue(relay.dsn(dsn), recover_every=0)
        pinned._sessions.idle_timeout = 0.0
        taken = pinned.take_many("jobs", 3)
        assert [m.id for m in taken] == ids[:3]
        session = pinned._sessions._all[0]
        assert session.raw.thread_id() == session.id + Renumbering.OFFSET
        assert pinned.ack_many(taken) == 3
        with pinned.claim("jobs") as m:
            assert m is not None and m.id == ids[3]
        assert pinned.pop("jobs").id == ids[4]
        # The session's claims are all settled, so it owns nothing and is closed when idle.
        assert not session.out
        pinned._sessions.retire_idle()
        assert pinned._sessions.open == 0
        pinned.close()
    assert [m.id for m in q.pop_many("jobs", 10)] == ids[5:]


def test_a_claim_that_reads_back_another_clients_rows_is_refused(q: mqlite.Queue, dsn: str) -> None:
    """Two clients multiplexed onto one server session tag their claims with the same id: the
    second one's read-back finds more rows than it claimed, and refuses instead of taking them."""
    from mqlite import protocol
    from mqlite.sql import statements

    q.push_many("jobs", [f"job {i}" for i in range(4)])
    raw = q._pool.open_session()
    try:
        first, second = protocol.Session(raw), protocol.Session(raw)  # one server session, two clients
        st = statements(q.table)
        assert len(protocol.fetch(first, st, "jobs", 2, 30_000_000, consume=False)) == 2
        with pytest.raises(Multiplexed, match="another client's claim"):
            protocol.fetch(second, st, "jobs", 2, 30_000_000, consume=False)
    finally:
        raw.close()
