"""Queue.cancel: waiting messages removed, running ones stopped at their next checkpoint, and the
CLI and HTTP forms."""

from __future__ import annotations

import threading

import pytest
from typer.testing import CliRunner

import mqlite
from mqlite.cli import app
from mqlite.errors import Cancelled, ConfigError, NotClaimed, NotFound
from mqlite.worker import Worker

from .conftest import rows
from .helpers import wait_for

runner = CliRunner()


def test_cancel_ready_delayed_and_failed_messages_removes_them(q: mqlite.Queue, admin) -> None:
    ready = q.push("jobs", b"ready")
    delayed = q.push("jobs", b"later", delay=3600)
    failed = q.push("jobs", b"bad")
    q.push("jobs", b"stays")
    taken = [q.take("jobs") for _ in range(3)]
    for m in taken:  # ready and bad taken first; put back the others
        if m.id == failed:
            q.fail(m, "broken")
        else:
            q.release(m)
    assert q.cancel("jobs", ready) == "cancelled (was ready)"
    assert q.cancel("jobs", delayed) == "cancelled (was delayed)"
    assert q.cancel("jobs", failed) == "cancelled (was failed)"
    assert [b for (b,) in rows(admin, "SELECT body FROM mqlite_messages")] == [b"stays"]
    with pytest.raises(NotFound):
        q.cancel("jobs", ready)  # already gone


def test_cancel_of_a_running_message_stops_it_at_its_next_checkpoint(q: mqlite.Queue, admin) -> None:
    q.keep_history("jobs", days=1)
    mid = q.push("jobs", b"long")
    started, go = threading.Event(), threading.Event()
    seen: list[BaseException] = []

    def handler(message: mqlite.Message) -> None:
        message.checkpoint("0")
        started.set()
        go.wait(10)
        try:
            message.checkpoint("1")
        except Cancelled as exc:
            seen.append(exc)
            raise

    worker = Worker(q, ["jobs"], handler, until_empty=True, handle_signals=False, idle_min=0.01, idle_max=0.05)
    done = threading.Thread(target=worker.run)
    done.start()
    assert started.wait(10)
    assert q.cancel("jobs", mid) == "cancelling"
    assert rows(admin, "SELECT cancelled_at IS NOT NULL FROM mqlite_messages WHERE id = %s", mid) == [(1,)]
    go.set()
    done.join(15)
    assert not done.is_alive() and len(seen) == 1
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]  # ended, not retried
    assert [(e.id, e.outcome) for e in q.history("jobs")] == [(mid, "cancelled")]


def test_touch_and_extend_raise_cancelled_and_the_claim_block_neither_retries_nor_releases(q: mqlite.Queue) -> None:
    a, b = q.push("jobs", b"a"), q.push("jobs", b"b")
    with pytest.raises(Cancelled):
        with q.claim("jobs") as m:
            assert m.id == a
            q.cancel("jobs", a)
            m.touch()
    with pytest.raises(Cancelled):
        with q.claim("jobs") as m:
            q.cancel("jobs", b)
            m.extend(60)
    assert q.pop("jobs") is None and q.peek("jobs", failed=True) == []


def test_a_cancelled_message_whose_handler_fails_or_releases_ends_cancelled(q: mqlite.Queue) -> None:
    for settle in (lambda m: q.nack(m, "boom"), lambda m: q.release(m), lambda m: q.fail(m, "no")):
        mid = q.push("jobs", b"x")
        m = q.take("jobs")
        assert q.cancel("jobs", mid) == "cancelling"
        assert settle(m) is True
        assert q.peek("jobs") == [] and q.peek("jobs", failed=True) == []


def test_a_handler_that_never_checks_in_is_acked_cancelled_late(q: mqlite.Queue) -> None:
    q.keep_history("jobs")
    mid = q.push("jobs", b"x")
    m = q.take("jobs")
    assert q.cancel("jobs", mid) == "cancelling"
    assert q.cancel("jobs", mid) == "cancelling"  # asking twice changes nothing
    assert q.ack(m) is True
    assert [e.outcome for e in q.history("jobs")] == ["cancelled_late"]
    with pytest.raises(NotClaimed):
        m.touch()


def test_cancel_refuses_unknown_ids_and_bad_input(q: mqlite.Queue) -> None:
    mid = q.push("jobs", b"x")
    with pytest.raises(NotFound):
        q.cancel("other", mid)  # not in that queue
    with pytest.raises(NotFound):
        q.cancel("jobs", mid + 1000)
    for bad in (0, -1, "1", 1.5, True):
        with pytest.raises(ConfigError):
            q.cancel("jobs", bad)  # type: ignore[arg-type]
    with pytest.raises(mqlite.errors.InvalidName):
        q.cancel("", mid)
    assert q.peek("jobs")[0].id == mid


def test_cli_cancel_and_its_one_red_line(q: mqlite.Queue, dsn: str) -> None:
    mid = q.push("jobs", b"x")
    done = runner.invoke(app, ["cancel", "jobs", str(mid), "--dsn", dsn])
    assert done.exit_code == 0 and "cancelled (was ready)" in done.output
    done = runner.invoke(app, ["cancel", "jobs", str(mid), "--dsn", dsn])
    assert done.exit_code == 2 and "NotFound" in done.output and len(done.output.strip().splitlines()) == 1


def test_http_cancel(q: mqlite.Queue) -> None:
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from mqlite.web import create_app

    waiting, running = q.push("jobs", b"w"), q.push("jobs", b"r", delay=0)
    with TestClient(create_app(q), base_url="http://127.0.0.1") as client:
        got = client.post(f"/messages/{waiting}/cancel?queue=jobs")
        assert got.status_code == 200 and got.json()["result"] == "cancelled (was ready)"
        claimed = client.post("/q/jobs/claim").json()
        assert claimed["id"] == running
        assert client.post(f"/messages/{running}/cancel?queue=jobs").json()["result"] == "cancelling"
        got = client.post(f"/messages/{running}/extend", json={"receipt": claimed["receipt"]})
        assert got.status_code == 409 and got.json()["error"] == "cancelled"
        assert client.post(f"/messages/{running}/cancel?queue=jobs").status_code == 404
        assert client.post(f"/messages/{running}/cancel").status_code == 400
        assert "Cancel" in client.get("/").text
    assert q.peek("jobs") == []


def test_stats_count_the_cancelling_and_the_async_queue_cancels(q: mqlite.Queue) -> None:
    import asyncio

    from mqlite.aio import AsyncQueue

    mid = q.push("jobs", b"x")
    m = q.take("jobs")

    async def go() -> None:
        async with AsyncQueue(queue=q) as aq:
            assert await aq.cancel("jobs", mid) == "cancelling"
            assert q.stats().queues["jobs"].cancelling == 1
            with pytest.raises(Cancelled):
                await aq.checkpoint(m, "1")
            assert m._handle.finished  # the message has ended: nothing left for its claim block
            other = await aq.push("jobs", b"y")
            with pytest.raises(Cancelled):
                async with aq.claim("jobs") as claimed:
                    assert claimed.id == other
                    await aq.cancel("jobs", other)
                    await aq.extend(claimed, 30)

    asyncio.run(go())
    assert "jobs" not in q.stats().queues and q.peek("jobs") == []  # both ended: nothing left of the queue


def test_a_workers_heartbeat_ends_a_cancelled_message_and_the_handler_learns_at_its_checkpoint(
    q: mqlite.Queue,
) -> None:
    q.keep_history("jobs")
    mid = q.push("jobs", b"long")
    started, go = threading.Event(), threading.Event()
    seen: list[BaseException] = []

    def handler(message: mqlite.Message) -> None:
        started.set()
        go.wait(15)  # no check-in meanwhile: the heartbeat's touch is the first to hear of the cancel
        try:
            message.checkpoint("1")
        except Cancelled as exc:
            seen.append(exc)
            raise

    worker = Worker(q, ["jobs"], handler, until_empty=True, handle_signals=False, heartbeat_every=0.5,
                    idle_min=0.01, idle_max=0.05)
    results: list[object] = []
    done = threading.Thread(target=lambda: results.append(worker.run()))
    done.start()
    assert started.wait(10)
    assert q.cancel("jobs", mid) == "cancelling"
    wait_for(lambda: q.history("jobs"), what="the heartbeat ending the cancelled message")
    go.set()
    done.join(15)
    assert not done.is_alive() and len(seen) == 1
    assert [(e.id, e.outcome) for e in q.history("jobs")] == [(mid, "cancelled")]
    assert results[0].processed == 0 and results[0].failed == 0  # type: ignore[attr-defined]
