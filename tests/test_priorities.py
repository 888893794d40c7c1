"""Priorities: lower first, first in first out within one, on every way in (library, transaction,
asyncio, CLI, HTTP, Celery, Dramatiq); bad priorities refused before anything is written."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from typer.testing import CliRunner

import mqlite
from mqlite import levels
from mqlite.cli import app as cli_app
from mqlite.errors import ConfigError
from mqlite.message import Receipt

from .conftest import rows
from .helpers import wait_for


def test_one_consumer_gets_priority_order_then_push_order(q: mqlite.Queue) -> None:
    pushed = []
    for i in range(4):
        for p in (5, 0, -3, 32767, -32768):
            pushed.append((p, q.push("jobs", f"{p}:{i}", priority=p)))
    expected = [new_id for _, new_id in sorted(pushed)]  # by priority, then id
    got = [q.pop("jobs") for _ in range(6)] + q.pop_many("jobs", 6)
    with q.claim("jobs") as m:
        got.append(m)
    got += q.take_many("jobs", 10)
    assert [m.id for m in got] == expected
    assert [m.priority for m in got] == [p for p, _ in sorted(pushed)]


def test_push_many_delayed_and_txn_pushes_carry_their_priority(q: mqlite.Queue, admin, dsn: str) -> None:
    from .test_txn_push import mysqldb_connect

    low = q.push_many("jobs", ["l1", "l2"], priority=9)
    q.push("jobs", "later", priority=-9, delay=3600)  # delayed: not before its time, whatever its priority
    q.push("jobs", "keyed", priority=-1, unique_key="k", max_attempts=2)
    conn = mysqldb_connect(dsn)
    try:
        q.push("jobs", "in txn", priority=-5, connection=conn)
        q.push_many("jobs", ["txn many"], priority=3, connection=conn)
        conn.commit()
    finally:
        conn.close()
    assert rows(admin, "SELECT priority FROM mqlite_messages WHERE id IN (%s, %s)", *low) == [(9,), (9,)]
    assert [m.text() for m in q.peek("jobs", 10)] == ["later", "in txn", "keyed", "txn many", "l1", "l2"]
    assert [m.text() for m in q.pop_many("jobs", 10)] == ["in txn", "keyed", "txn many", "l1", "l2"]


@pytest.mark.parametrize("bad", [32768, -32769, 1.5, "1", True, None])
def test_a_priority_outside_signed_16_bits_is_refused_and_nothing_written(q: mqlite.Queue, admin, bad: Any) -> None:
    with pytest.raises(ConfigError, match="priority must be an integer"):
        q.push("jobs", "x", priority=bad)
    with pytest.raises(ConfigError, match="priority must be an integer"):
        q.push_many("jobs", ["x"], priority=bad)
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]


def test_receipts_carry_the_priority_and_old_receipts_still_read() -> None:
    from datetime import datetime

    r = Receipt("q.with.dots", datetime(2026, 1, 2, 3, 4, 5, 6), 7, 8, 9, datetime(2026, 1, 2, 3, 4, 6), -12)
    assert Receipt.parse(str(r)) == r
    old = "7.8.9.20260102030406000000.20260102030405000006.q.with.dots"
    assert Receipt.parse(old) == Receipt("q.with.dots", r.available_at, 7, 8, 9, r.claimed_at, 0)
    with pytest.raises(mqlite.errors.NotClaimed):
        Receipt.parse("7.8.9.20260102030406000000.20260102030405000006x1.q")


def test_settling_a_prioritised_claim_goes_through_its_fence(q: mqlite.Queue) -> None:
    q.push("jobs", "a", priority=-7)
    q.push("jobs", "b", priority=4)
    a, b = q.take_many("jobs", 2)
    assert q.release(str(a.receipt)) is not False
    again = q.take("jobs")
    assert again.id == a.id and again.priority == -7
    assert q.ack_many([again, b]) == 2
    assert q.size("jobs") == 0


def test_a_priority_new_to_a_busy_queue_is_served_within_the_refresh(q: mqlite.Queue) -> None:
    q.push_many("busy", ["old"] * 3000)
    assert q.pop("busy").text() == "old"  # the consumer now knows the queue's one priority
    urgent = q.push("busy", "urgent", priority=-1)
    pushed = time.monotonic()
    while (m := q.pop("busy")) is not None and m.id != urgent:
        pass
    assert m is not None and m.id == urgent, "served only once the queue ran dry"
    assert time.monotonic() - pushed < levels.FRESH + 5 and q.size("busy") > 0  # (+5: a loaded machine)


def test_asyncio_push_and_push_many_take_a_priority(q: mqlite.Queue) -> None:
    async def main() -> list[str]:
        from mqlite.aio import AsyncQueue

        aq = AsyncQueue(queue=q)
        await aq.push("jobs", "late")
        await aq.push_many("jobs", ["b1", "b2"], priority=2)
        await aq.push("jobs", "first", priority=-2)
        return [m.text() for m in await aq.pop_many("jobs", 5)]

    assert asyncio.run(main()) == ["first", "late", "b1", "b2"]


def test_cli_push_priority_and_a_bad_one_is_one_red_line(q: mqlite.Queue, dsn: str, admin) -> None:
    runner = CliRunner()
    assert runner.invoke(cli_app, ["push", "c", "plain", "--dsn", dsn]).exit_code == 0
    done = runner.invoke(cli_app, ["push", "c", "urgent", "--priority", "-4", "--dsn", dsn])
    assert done.exit_code == 0, done.output
    bad = runner.invoke(cli_app, ["push", "c", "x", "--priority", "40000", "--dsn", dsn])
    assert bad.exit_code == 2 and "ConfigError" in bad.output and len(bad.output.strip().splitlines()) == 1
    peeked = runner.invoke(cli_app, ["peek", "c", "--json", "--dsn", dsn])
    assert '"priority": -4' in peeked.output
    assert [m.text() for m in q.pop_many("c", 5)] == ["urgent", "plain"]


def test_http_push_priority_and_400_for_a_bad_one(q: mqlite.Queue, admin) -> None:
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from mqlite.web.app import create_app

    with TestClient(create_app(q, stats_ttl=0, lease_sweep=0.1), base_url="http://localhost") as client:
        assert client.post("/q/h", content=b"plain").status_code == 201
        assert client.post("/q/h", content=b"urgent", params={"priority": "-3"}).status_code == 201
        for bad in ("32768", "x", "1.5", ""):
            r = client.post("/q/h", content=b"bad", params={"priority": bad})
            assert r.status_code == 400 and r.json()["error"] == "bad_parameter", r.text
        assert client.post("/q/h", content=b"popped", params={"priority": "-9"}).status_code == 201
        popped = client.get("/q/h")
        assert popped.content == b"popped" and popped.headers["X-Mqlite-Priority"] == "-9"
        claimed = client.post("/q/h/claim").json()
        assert claimed["body"] == "urgent" and claimed["priority"] == -3
        q.push("h", b"doomed", priority=7)
        # A priority new to the queue: the claimer may need one more claim to learn it (levels.py).
        doomed = wait_for(lambda: [m for m in q.take_many("h", 5) if m.text() == "doomed"], what="doomed")[0]
        q.fail(doomed, "broken")
        assert [m["priority"] for m in client.get("/q/h/failed").json()["messages"]] == [7]
        assert '<td class="n">7</td>' in client.get("/").text  # the status page's failed list
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages WHERE body = 'bad'") == [(0,)]


def test_celery_priority_option_becomes_the_mqlite_priority(q: mqlite.Queue, dsn: str) -> None:
    kombu = pytest.importorskip("kombu")
    with kombu.Connection(dsn, transport="mqlite.contrib.kombu:Transport") as conn:
        sq = conn.SimpleQueue("cel")
        sq.put({"n": "plain"})
        sq.put({"n": "urgent"}, priority=1)  # kombu's Redis convention: 0 is the most urgent
        sq.put({"n": "first"}, priority=0)
        sq.put({"n": "last"}, priority=9)
        sq.close()
    got = q.peek("cel", 10)
    assert [m.priority for m in got] == [0, 0, 1, 9]
    assert [m.id for m in got][:2] == sorted(m.id for m in got if m.priority == 0)


def test_dramatiq_actor_priority_becomes_the_mqlite_priority(q: mqlite.Queue, dsn: str) -> None:
    dramatiq = pytest.importorskip("dramatiq")
    from mqlite.contrib.dramatiq import MqliteBroker

    broker = MqliteBroker(dsn)
    try:
        normal = dramatiq.actor(lambda: None, actor_name="normal", queue_name="dq", broker=broker)
        urgent = dramatiq.actor(lambda: None, actor_name="urgent", queue_name="dq", broker=broker, priority=-10)
        normal.send()
        urgent.send()
    finally:
        broker.close()
    assert [m.priority for m in q.peek("dq", 5)] == [-10, 0]
