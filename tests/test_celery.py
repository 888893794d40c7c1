"""mqlite as Celery's broker: real `celery worker` subprocesses and real kombu connections, no mocks.

Side channel: each task inserts a row into `done` (tests/celery_app.py), so a task run twice is
counted twice. Workers run in their own process group so that SIGKILL takes the pool children too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    import celery  # noqa: F401
    import kombu
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    pytest.skip(f"the celery extra is not installed ({exc}): pip install 'mqlite[celery]'", allow_module_level=True)

import mqlite
from mqlite.contrib.kombu import Transport

from .celery_app import SIDE_TABLE, make_app
from .conftest import rows
from .helpers import ROOT, wait_for

TRANSPORT = "mqlite.contrib.kombu:Transport"


class Workers:
    """`celery worker` processes started by a test; killed at teardown if still running."""

    def __init__(self, dsn: str, logs: Path) -> None:
        self.dsn = dsn
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *extra: str, acks_late: bool = False, queues: str = "celery,reports,urgent") -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "MQLITE_TEST_BROKER": self.dsn,
            "MQLITE_TEST_ACKS_LATE": "1" if acks_late else "0",
        }
        log = open(self.logs / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker", "-P", "prefork", "-c", "2",
             "-Q", queues, "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING", *extra],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker and its pool children (the whole process group)."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """Warm shutdown (SIGTERM), as a deployment stops a worker."""
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        finally:
            self.kill(proc)

    def log_tail(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.logs.glob("worker-*.log")))


@pytest.fixture
def workers(dsn: str, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(dsn, tmp_path)
    yield w
    print(w.log_tail())  # shown by pytest when the test failed
    for proc in w.procs:
        if proc.poll() is None:
            w.kill(proc)


@pytest.fixture
def side(q: mqlite.Queue, admin) -> object:
    admin.cursor().execute(SIDE_TABLE)
    return admin


def done_count(admin) -> int:
    return int(rows(admin, "SELECT COUNT(*) FROM done")[0][0])


def depth(q: mqlite.Queue, queue: str) -> tuple[int, int, int, int]:
    s = q.stats().queues.get(queue)
    return (0, 0, 0, 0) if s is None else (s.ready, s.delayed, s.claimed, s.failed)


# -- real workers ------------------------------------------------------------------------------


@pytest.mark.slow
def test_thousand_tasks_run_exactly_once(q: mqlite.Queue, dsn: str, side, workers: Workers) -> None:
    app = make_app(dsn)
    worker = workers.start()
    for i in range(1000):
        app.tasks["t.record"].delay(i)
    wait_for(lambda: done_count(side) >= 1000, timeout=180, what="1000 tasks done")
    wait_for(lambda: depth(q, "celery") == (0, 0, 0, 0), timeout=30, what="the queue to be empty (all acked)")
    workers.stop(worker)
    assert worker.returncode is not None
    assert rows(side, "SELECT COUNT(*), COUNT(DISTINCT k), MIN(k), MAX(k) FROM done") == [(1000, 1000, 0, 999)]
    assert q.stats().queues["celery"].processed == 1000


@pytest.mark.slow
def test_acks_late_sigkilled_worker_loses_nothing(q: mqlite.Queue, dsn: str, side, workers: Workers) -> None:
    app = make_app(dsn, acks_late=True)
    first = workers.start(acks_late=True)
    for i in range(1000):
        app.tasks["t.record"].apply_async((i,), {"sleep": 0.005})
    wait_for(lambda: done_count(side) >= 300, timeout=120, what="300 tasks done")
    workers.kill(first)  # SIGKILL, worker and pool children: kombu restores nothing
    held = depth(q, "celery")[2]  # the dead worker's claims (nothing has recovered them yet)
    assert held > 0, "the worker held no claimed message when it was killed"
    killed_at = done_count(side)
    assert killed_at < 1000
    workers.start(acks_late=True)
    wait_for(
        lambda: rows(side, "SELECT COUNT(DISTINCT k) FROM done")[0][0] == 1000,
        timeout=180, what="every task done after the restart",
    )
    wait_for(lambda: depth(q, "celery") == (0, 0, 0, 0), timeout=60, what="the queue to be empty (all acked)")
    total, distinct, again = rows(side, "SELECT COUNT(*), COUNT(DISTINCT k), SUM(redelivered) FROM done")[0]
    print(f"killed after {killed_at} runs holding {held} claims; {total - distinct} ran twice")
    assert distinct == 1000  # none lost
    assert total - distinct <= held  # run twice: at most what the dead worker held
    assert again >= 1  # the dead worker's claims came back through mqlite recovery, marked redelivered
    assert q.peek("celery", failed=True) == []


@pytest.mark.slow
def test_countdown_is_an_mqlite_delay_and_routing_reaches_named_queues(
    q: mqlite.Queue, dsn: str, side, workers: Workers
) -> None:
    app = make_app(dsn)
    workers.start()
    sent = time.time()
    app.tasks["t.report"].apply_async((1,), {"sent": sent}, countdown=2)  # routed to "reports"
    # Delayed in the table, not held in a worker's memory:
    assert depth(q, "reports")[:2] == (0, 1)
    app.tasks["t.record"].apply_async((2,), {"sent": time.time()}, queue="urgent")
    wait_for(lambda: done_count(side) >= 2, timeout=60, what="both tasks done")
    got = {k: (queue, s, ran) for k, queue, s, ran in rows(side, "SELECT k, queue, sent, ran FROM done")}
    queue, s, ran = got[1]
    assert queue == "reports"
    assert ran - s >= 2.0, f"ran {ran - s:.3f}s after apply_async(countdown=2)"
    assert got[2][0] == "urgent"
    assert depth(q, "reports") == (0, 0, 0, 0)


@pytest.mark.slow
def test_eta_task_held_in_worker_memory_stays_claimed_and_survives_sigkill(
    q: mqlite.Queue, dsn: str, side, workers: Workers
) -> None:
    """Celery keeps a task whose eta is still ahead in the worker's memory (its timer), unacked.
    With eta mapped to an mqlite delay that happens only when clocks disagree; simulated here by
    making the delayed row due at once. Held in memory, it stays claimed in mqlite, so a SIGKILL
    loses nothing: it comes back by recovery and runs, still not before its eta."""
    app = make_app(dsn)
    sent = time.time()
    app.tasks["t.record"].apply_async((7,), {"sent": sent}, countdown=6)
    side.cursor().execute("UPDATE mqlite_messages SET available_at = NOW(6) WHERE queue = 'celery'")
    first = workers.start()
    wait_for(lambda: depth(q, "celery")[2] == 1, timeout=60, what="the worker to claim the eta task")
    assert done_count(side) == 0  # held in the worker's timer, not run, not acked
    workers.kill(first)
    workers.start()
    (k, s, ran), = wait_for(lambda: rows(side, "SELECT k, sent, ran FROM done"), timeout=60, what="the eta task")
    assert k == 7 and ran - s >= 6.0
    wait_for(lambda: depth(q, "celery") == (0, 0, 0, 0), timeout=30, what="the queue to be empty")


def test_purge_deletes_ready_and_delayed_tasks(q: mqlite.Queue, dsn: str) -> None:
    app = make_app(dsn)
    for i in range(30):
        app.tasks["t.record"].delay(i)
    for i in range(5):
        app.tasks["t.record"].apply_async((i,), countdown=600)
    assert depth(q, "celery")[:2] == (30, 5)
    assert app.control.purge() == 35
    assert depth(q, "celery") == (0, 0, 0, 0)


def test_celery_one_line_configuration_uses_the_transport(q: mqlite.Queue, dsn: str, monkeypatch) -> None:
    app = make_app(dsn)
    with app.connection_for_write() as conn:
        assert isinstance(conn.transport, Transport)
        assert conn.as_uri() == mqlite.Queue(dsn).settings.redacted()
    with kombu.Connection("mqlite+" + dsn) as alias:  # the alias registered by importing the module
        assert isinstance(alias.transport, Transport)
        alias.SimpleQueue("via-alias").put("x")
    monkeypatch.setenv("MQLITE_DSN", dsn)
    from celery import Celery

    bare = Celery("bare", broker_transport=TRANSPORT)  # no URL: MQLITE_DSN
    with bare.connection_for_write() as conn:
        conn.SimpleQueue("via-env").put("y")
    assert depth(q, "via-alias")[0] == 1 and depth(q, "via-env")[0] == 1


# -- the transport through kombu directly --------------------------------------------------------


def connect(dsn: str, **options: object) -> kombu.Connection:
    return kombu.Connection(dsn, transport=TRANSPORT, transport_options=options)


def test_ack_requeue_reject_and_dead_letter(q: mqlite.Queue, dsn: str) -> None:
    with connect(dsn) as conn:
        sq = conn.SimpleQueue("k")
        sq.put({"n": 1})
        m = sq.get(timeout=5)
        assert m.payload == {"n": 1} and m.delivery_info["redelivered"] is False
        assert depth(q, "k")[2] == 1  # claimed while unacked
        m.ack()
        conn.transport.flush_acks()  # acks go out in the background, as AMQP's do
        assert depth(q, "k") == (0, 0, 0, 0)

        sq.put({"n": 2})
        sq.get(timeout=5).requeue()  # back at once, one attempt counted
        m = sq.get(timeout=5)
        assert m.payload == {"n": 2} and m.delivery_info["redelivered"] is True
        m.reject()  # not requeued: kept as failed (mqlite's dead letter)
        failed = q.peek("k", failed=True)
        assert len(failed) == 1 and failed[0].last_error == "rejected by the consumer"
        assert failed[0].attempts == 2
        sq.close()


def test_no_ack_get_is_a_pop(q: mqlite.Queue, dsn: str) -> None:
    with connect(dsn) as conn:
        channel = conn.default_channel
        conn.SimpleQueue("p").put("x")
        m = channel.basic_get("p", no_ack=True)
        assert m is not None and m.payload == "x"
        assert depth(q, "p") == (0, 0, 0, 0)  # deleted before delivery: at-most-once


def test_unacked_messages_are_released_at_close(q: mqlite.Queue, dsn: str) -> None:
    with connect(dsn) as conn:
        sq = conn.SimpleQueue("r")
        for i in range(3):
            sq.put(i)
        ids = sorted(m.id for m in q.peek("r"))
        got = [sq.get(timeout=5) for _ in range(2)]
        assert sorted(m.payload for m in got) == [0, 1]
        assert depth(q, "r")[2] == 3  # two delivered, the third claimed in the same batch, buffered
    # kombu's restore at close (and the channel, for its buffer) gave the claims back: same messages, no attempt counted, no copies.
    assert depth(q, "r") == (3, 0, 0, 0)
    back = q.peek("r")
    assert sorted(m.id for m in back) == ids and all(m.attempts == 0 for m in back)


def test_held_message_outlives_its_lease_while_the_consumer_lives(q: mqlite.Queue, dsn: str, admin) -> None:
    def lease_until() -> object:
        return rows(admin, "SELECT lease_until FROM mqlite_messages WHERE queue = 'held'")[0][0]

    with connect(dsn, lease=1.0, polling_interval=0.1) as conn:
        conn.SimpleQueue("held").put("slow")
        channel = conn.default_channel
        m = channel.basic_get("held")
        first = lease_until()
        idle = conn.SimpleQueue("idle")  # a consumer on an empty queue keeps drain_events looping

        def renewed() -> bool:
            try:
                conn.drain_events(timeout=0.2)
            except socket.timeout:
                pass
            return lease_until() > first

        idle.consumer.consume()
        wait_for(renewed, timeout=15, what="the held claim's lease to be renewed")
        assert q.recover().total == 0  # nothing of a live consumer is recovered
        m.ack()
        conn.transport.flush_acks()
        assert depth(q, "held") == (0, 0, 0, 0)
        idle.close()
    assert q.stats().queues["held"].processed == 1  # counted by the connection's Queue, flushed at close


def test_idle_consumer_polls_with_bounded_backoff(q: mqlite.Queue, dsn: str) -> None:
    with connect(dsn, polling_interval=0.5) as conn:
        sq = conn.SimpleQueue("quiet")
        sq.consumer.consume()
        mq = conn.transport.mq
        takes = []
        real_take = mq.take_many

        def counting_take(queue: str, n: int, **kw: object) -> object:
            takes.append(time.monotonic())
            return real_take(queue, n, **kw)

        mq.take_many = counting_take  # type: ignore[method-assign]
        try:
            began = time.monotonic()
            with pytest.raises(socket.timeout):
                conn.drain_events(timeout=3.0)
            assert time.monotonic() - began >= 3.0
            # 0.01 s doubling to 0.5 s: about 11 polls in 3 s, not a storm, not one per second either.
            assert 4 <= len(takes) <= 20, takes
            gaps = [b - a for a, b in zip(takes, takes[1:], strict=False)]
            assert max(gaps) <= 0.5 + 0.25
            # An idle consumer still picks up new work within the longest interval.
            sq.put("wake")
            pushed = time.monotonic()
            m = sq.get(timeout=5)
            assert m.payload == "wake" and time.monotonic() - pushed < 0.5 + 0.5
            m.ack()
        finally:
            del mq.take_many
        sq.close()


def test_foreign_message_is_failed_not_delivered(q: mqlite.Queue, dsn: str) -> None:
    q.push("mixed", b"not json")
    with connect(dsn) as conn:
        sq = conn.SimpleQueue("mixed")
        sq.put("fine")
        assert sq.get(timeout=5).payload == "fine"
        failed = q.peek("mixed", failed=True)
        assert [m.body for m in failed] == [b"not json"]
        assert "not a kombu message" in (failed[0].last_error or "")
        sq.close()
