"""mqlite as Dramatiq's broker: a real `dramatiq` worker subprocess, and Dramatiq's Worker in process.

Actors of the worker subprocess live in tests/dramatiq_app.py; the tests send to them through
actors of the same name declared on a broker of their own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    import dramatiq
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    pytest.skip(f"the dramatiq extra is not installed ({exc}): pip install 'mqlite[dramatiq]'", allow_module_level=True)

from dramatiq.errors import QueueJoinTimeout

import mqlite
from mqlite.contrib.dramatiq import MqliteBroker

from .celery_app import SIDE_TABLE
from .conftest import rows
from .helpers import ROOT, wait_for


@pytest.fixture
def broker(q: mqlite.Queue, dsn: str, admin) -> Iterator[MqliteBroker]:
    admin.cursor().execute(SIDE_TABLE)
    b = MqliteBroker(dsn)
    yield b
    b.close()


def declare(broker: MqliteBroker, name: str, queue: str, fn=lambda *a, **kw: None, **options) -> dramatiq.Actor:
    return dramatiq.actor(fn, actor_name=name, queue_name=queue, broker=broker, **options)


@pytest.fixture
def worker_proc(dsn: str, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    print(log_of(tmp_path))  # shown by pytest when the test failed
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=30)


def start_worker(procs: list, dsn: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MQLITE_TEST_BROKER": dsn}
    log = open(tmp_path / "dramatiq.log", "wb")  # noqa: SIM115 - the process owns it
    proc = subprocess.Popen(
        [sys.executable, "-m", "dramatiq", "tests.dramatiq_app", "--processes", "1", "--threads", "4"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT,
    )
    log.close()
    procs.append(proc)
    return proc


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


def log_of(tmp_path: Path) -> str:
    path = tmp_path / "dramatiq.log"
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def done(admin, queue: str) -> list[tuple]:
    return rows(admin, "SELECT k, sent, ran FROM done WHERE queue = %s ORDER BY k", queue)


# -- a real dramatiq worker ----------------------------------------------------------------------


@pytest.mark.slow
def test_thousand_actor_calls_run_exactly_once(broker, q, dsn, admin, worker_proc, tmp_path) -> None:
    record = declare(broker, "record", "dq_default")
    for i in range(1000):
        record.send(i)
    proc = start_worker(worker_proc, dsn, tmp_path)
    wait_for(lambda: len(done(admin, "dq_default")) >= 1000 or q.peek("dq_default", failed=True), timeout=180,
             what="1000 actor calls")
    assert q.peek("dq_default", failed=True) == []
    broker.join("dq_default", timeout=30_000)
    stop_worker(proc)
    assert rows(admin, "SELECT COUNT(*), COUNT(DISTINCT k), MIN(k), MAX(k) FROM done") == [(1000, 1000, 0, 999)]
    assert q.stats().queues["dq_default"].processed == 1000


@pytest.mark.slow
def test_failing_actor_ends_failed_with_its_error_and_delays_live_in_the_table(
    broker, q, dsn, admin, worker_proc, tmp_path
) -> None:
    explode = declare(broker, "explode", "dq_failing")
    record = declare(broker, "record", "dq_default")
    flaky = declare(broker, "flaky", "dq_flaky")
    proc = start_worker(worker_proc, dsn, tmp_path)
    explode.send(7)
    sent = time.time()
    record.send_with_options(args=(1,), kwargs={"sent": sent}, delay=1500)
    assert q.stats().queues["dq_default"].delayed == 1  # in the table, hidden until due
    flaky.send(3)

    failed = wait_for(lambda: q.peek("dq_failing", failed=True), timeout=60,
                      what="the failing actor's message to be failed")
    assert len(failed) == 1
    assert failed[0].last_error.startswith("ValueError: boom 7")
    assert "Traceback" in failed[0].last_error and "raise ValueError" in failed[0].last_error

    (k, s, ran), = wait_for(lambda: done(admin, "dq_default"), timeout=60, what="the delayed call")
    assert k == 1 and ran - s >= 1.5, f"ran {ran - s:.3f}s after a delay of 1.5s"

    # The retry after the first failure waited in mqlite as a delayed message, then succeeded.
    wait_for(lambda: done(admin, "dq_flaky"), timeout=60, what="the flaky actor's retry")
    assert len(done(admin, "dq_flaky_try")) == 2
    broker.join("dq_flaky", timeout=30_000)
    stop_worker(proc)
    assert q.peek("dq_flaky", failed=True) == []


# -- the broker API, with Dramatiq's own Worker in this process -----------------------------------


def test_in_process_worker_acks_nacks_and_joins(broker: MqliteBroker, q: mqlite.Queue) -> None:
    seen: list[int] = []

    def ok(k: int) -> None:
        seen.append(k)

    def bad(k: int) -> None:
        raise KeyError(k)

    good = declare(broker, "ok", "inproc", ok)
    boom = declare(broker, "bad", "inproc", bad, max_retries=0)
    assert broker.get_declared_queues() == {"inproc"}
    assert broker.get_declared_delay_queues() == set()  # no .DQ: delays live in the table
    for i in range(20):
        good.send(i)
    boom.send(99)
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        broker.join("inproc", timeout=30_000)
        worker.join()
    finally:
        worker.stop()
    assert sorted(seen) == list(range(20))
    failed = q.peek("inproc", failed=True)
    assert len(failed) == 1 and failed[0].last_error.startswith("KeyError: 99")
    assert q.stats().queues["inproc"].ready == 0


def test_consumer_respects_prefetch_and_requeue_releases(broker: MqliteBroker, q: mqlite.Queue) -> None:
    actor = declare(broker, "noop", "pf")
    for i in range(5):
        actor.send(i)
    consumer = broker.consume("pf", prefetch=2, timeout=200)
    first, second = next(consumer), next(consumer)
    assert first is not None and second is not None
    assert next(consumer) is None  # two unacked: no third claim
    assert q.stats().queues["pf"].claimed == 2
    consumer.ack(first)
    third = next(consumer)
    assert third is not None and third.args == (2,)
    consumer.requeue([second, third])  # worker shutdown: given back, no attempt counted
    s = q.stats().queues["pf"]
    assert (s.ready, s.claimed) == (4, 0)
    assert all(m.attempts == 0 for m in q.peek("pf"))
    consumer.close()


def test_consumer_claims_its_prefetch_in_one_batch_and_close_gives_back_the_undelivered(
    broker: MqliteBroker, q: mqlite.Queue,
) -> None:
    actor = declare(broker, "noop", "pfb")
    for i in range(6):
        actor.send(i)
    consumer = broker.consume("pfb", prefetch=4, timeout=200)
    first = next(consumer)
    assert first is not None and first.args == (0,)
    assert q.stats().queues["pfb"].claimed == 4  # one claim for the whole prefetch window
    assert [next(consumer).args for _ in range(3)] == [(1,), (2,), (3,)]  # type: ignore[union-attr]
    assert next(consumer) is None  # four unacked: nothing more
    consumer.ack(first)
    fifth = next(consumer)
    assert fifth is not None and fifth.args == (4,)
    consumer.close()  # nothing undelivered left; the delivered ones stay claimed until requeued
    s = q.stats().queues["pfb"]
    assert (s.ready, s.claimed) == (1, 4)


def test_close_releases_what_was_claimed_but_never_delivered(broker: MqliteBroker, q: mqlite.Queue) -> None:
    actor = declare(broker, "noop", "pfc")
    for i in range(5):
        actor.send(i)
    consumer = broker.consume("pfc", prefetch=4, timeout=200)
    delivered = next(consumer)
    assert delivered is not None
    consumer.close()
    s = q.stats().queues["pfc"]
    assert (s.ready, s.claimed) == (4, 1)
    assert all(m.attempts == 0 for m in q.peek("pfc"))
    consumer.requeue([delivered])
    assert q.stats().queues["pfc"].ready == 5


def test_flush_join_and_delayed_enqueue(broker: MqliteBroker, q: mqlite.Queue) -> None:
    actor = declare(broker, "noop", "fl")
    other = declare(broker, "noop2", "fl2")
    actor.send(1)
    actor.send_with_options(args=(2,), delay=60_000)
    other.send(3)
    s = q.stats().queues["fl"]
    assert (s.ready, s.delayed) == (1, 1)
    with pytest.raises(QueueJoinTimeout):
        broker.join("fl", timeout=200)
    broker.flush("fl")
    broker.join("fl", timeout=1000)
    assert q.stats().queues["fl2"].ready == 1
    broker.flush_all()
    broker.join("fl2", timeout=1000)


def test_idle_consumer_backs_off_to_its_timeout(broker: MqliteBroker) -> None:
    broker.declare_queue("empty")
    consumer = broker.consume("empty", prefetch=1, timeout=300)
    began = time.monotonic()
    polls = 0
    while time.monotonic() - began < 2.0:
        assert next(consumer) is None
        polls += 1
    # 10 ms doubling to 300 ms: about 10 polls in 2 s.
    assert 4 <= polls <= 16, polls


def test_a_retry_delayed_100_ms_runs_on_time(q: mqlite.Queue, dsn: str) -> None:
    # The consumer's own polling backs off to 2 s and its listener looks every 5 s at most: the
    # retry falls due while it sleeps, and only the doorbell (mqlite/wake.py) explains an on-time
    # run: the push rings, the listener sleeps until the due time, then wakes the consumer.
    attempts: list[float] = []

    def flaky() -> None:
        if not attempts:
            time.sleep(0.7)  # the consumer's backoff grows meanwhile (polls at 0.63 s, then 1.27 s)
            attempts.append(time.monotonic())
            raise RuntimeError("first try fails")
        attempts.append(time.monotonic())

    broker = MqliteBroker(dsn, wake_bound=5.0)
    actor = declare(broker, "flaky_fast", "retry_fast", flaky, max_retries=1, min_backoff=100, max_backoff=100)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=2000)
    worker.start()
    try:
        actor.send()
        wait_for(lambda: len(attempts) == 2, timeout=30, what="the retry")
    finally:
        worker.stop()
        broker.close()
    gap = attempts[1] - attempts[0]
    assert gap < 0.1 + 0.15, f"a retry delayed at most 100 ms ran {gap * 1000:.0f} ms after the failure"
