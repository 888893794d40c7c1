"""Wake-ups (mqlite/wake.py): an idle consumer hears of a push from another process at once, a lost
signal is made up by the listener's bounded look, and nothing is lost or handled twice."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import mqlite
from mqlite.idle import IdleWait
from mqlite.message import Message

from .conftest import rows
from .helpers import python, read_line, wait_for

PUSHER = """
import sys, time, mqlite
q = mqlite.Queue(sys.argv[1], wake=sys.argv[2] == "ring")
q.push("warm", b"x")  # connect before the first timed push
print("ready", flush=True)
for line in sys.stdin:
    queue, delay, priority = line.split()
    sent = time.time()
    q.push(queue, str(sent).encode(), delay=float(delay) or None, priority=int(priority))
    print(sent, flush=True)
"""


@contextmanager
def worker(q: mqlite.Queue, queues: list[str], poll: float = 5.0, **options: object) -> Iterator[list[tuple[float, Message]]]:
    """A Worker over `q` whose own polling waits `poll` seconds; yields what it handled (time, message)."""
    handled: list[tuple[float, Message]] = []
    w = mqlite.Worker(q, queues, lambda m: handled.append((time.time(), m)), idle_min=poll, idle_max=poll,
                      handle_signals=False, **options)
    thread = threading.Thread(target=w.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: set(queues) <= set(q.doorbell.listening), what="the worker's listener waiting")
        yield handled
    finally:
        started = time.monotonic()
        w.stop()
        thread.join(10)
        assert not thread.is_alive()
        assert time.monotonic() - started < 2.0  # a stop ends the bell-backed wait, not the 5 s pause


@contextmanager
def pusher(dsn: str, ring: bool = True) -> Iterator[object]:
    proc = python(PUSHER, dsn, "ring" if ring else "silent")
    try:
        assert read_line(proc) == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


@pytest.fixture
def dsn(q: mqlite.Queue, mqlite_dsn: str) -> str:
    """The test's database, schema applied (by `q`)."""
    return mqlite_dsn


def push_from(proc: object, queue: str, delay: float = 0.0, priority: int = 0) -> float:
    proc.stdin.write(f"{queue} {delay} {priority}\n")  # type: ignore[attr-defined]
    proc.stdin.flush()  # type: ignore[attr-defined]
    return float(read_line(proc))  # type: ignore[arg-type]


def test_idle_worker_wakes_on_a_push_from_another_process(dsn: str) -> None:
    # Both the worker's polling and the listener's look wait 5 s: only a ring explains a fast delivery.
    with mqlite.Queue(dsn, wake_bound=5.0) as q, worker(q, ["jobs"]) as handled, pusher(dsn) as proc:
        for n in range(3):
            sent = push_from(proc, "jobs")
            got = wait_for(lambda n=n: len(handled) > n and handled[n], timeout=10, what="the message handled")
            assert got[0] - sent < 0.5, f"push → handler took {got[0] - sent:.3f}s"
            wait_for(lambda: "jobs" in q.doorbell.listening, what="the listener waiting again")


def test_a_delayed_message_is_handled_when_due(dsn: str) -> None:
    with mqlite.Queue(dsn, wake_bound=5.0) as q, worker(q, ["later"]) as handled, pusher(dsn) as proc:
        push_from(proc, "later", delay=3600)  # the head of priority 0 is due in an hour...
        sent = push_from(proc, "later", delay=0.3, priority=3)  # ...the next due is in another priority
        wait_for(lambda: handled, timeout=10, what="the delayed message handled")
        late = handled[0][0] - sent
        assert 0.3 <= late < 0.8, f"due after 0.3 s, handled after {late:.3f}s"


def test_a_lost_signal_is_made_up_by_the_bounded_look(dsn: str) -> None:
    # The pusher rings nobody (wake=False): the listener's look, every 0.3 s, finds the message.
    with mqlite.Queue(dsn, wake_bound=0.3) as q, worker(q, ["quiet"]) as handled, pusher(dsn, ring=False) as proc:
        sent = push_from(proc, "quiet")
        wait_for(lambda: handled, timeout=10, what="the message handled without a ring")
        assert handled[0][0] - sent < 1.5


def test_a_broken_listening_session_falls_back_to_polling_then_listens_again(dsn: str, admin) -> None:
    with mqlite.Queue(dsn, wake_bound=5.0) as q, worker(q, ["jobs"], poll=0.5) as handled, pusher(dsn) as proc:
        # Kill the listening session itself (the server's KILL; its locks go with it).
        victim = q.doorbell._session_id
        rows(admin, "KILL %s", victim)
        push_from(proc, "jobs")
        wait_for(lambda: handled, timeout=10, what="the message handled by polling")
        wait_for(lambda: q.doorbell._session_id not in (0, victim) and "jobs" in q.doorbell.listening,
                 timeout=20, what="a new listening session")


        sent = push_from(proc, "jobs")
        wait_for(lambda: len(handled) > 1, timeout=10, what="the second message handled")
        assert handled[1][0] - sent < 1.5


def test_no_wake_up_is_lost_between_an_empty_poll_and_the_wait(dsn: str) -> None:
    # Pushes 0-3 ms apart land in every phase of the consumer's cycle (claiming, handling, about
    # to wait, waiting) and of the listener's (looking, sleeping, between statements). Polling
    # and looks wait 5 s here: one lost wake-up would leave a message waiting seconds.
    import random

    rng = random.Random(7)
    with mqlite.Queue(dsn, wake_bound=5.0) as q, worker(q, ["burst"]) as handled, mqlite.Queue(dsn) as producer:
        sent: dict[str, float] = {}
        for n in range(100):
            sent[str(n)] = time.time()
            producer.push("burst", str(n))
            time.sleep(rng.uniform(0, 0.003))  # pacing, not synchronisation
        wait_for(lambda: len(handled) >= 100, timeout=30, what="every message handled")
        # How long the consumer sat idle while a message was there: from its push, or from the
        # previous message handled if it was still busy then (one consumer, FIFO). A lost wake-up
        # would show as seconds here; a loaded machine's backlog does not.
        previous = 0.0
        idle = []
        for at, m in handled:
            idle.append(at - max(sent[m.text()], previous))
            previous = at
        assert max(idle) < 1.0, f"a message waited {max(idle):.3f}s for an idle consumer"


def test_nothing_lost_or_handled_twice(dsn: str) -> None:
    total = 300
    with mqlite.Queue(dsn, wake_bound=0.5) as q, worker(q, ["a", "b"], poll=1.0, concurrency=4) as handled, \
            mqlite.Queue(dsn) as producer:
        def produce(queue: str) -> None:
            for n in range(total // 2):
                producer.push(queue, f"{queue}{n}")

        threads = [threading.Thread(target=produce, args=(name,)) for name in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wait_for(lambda: len(handled) >= total, timeout=30, what="every message handled")
        bodies = [m.text() for _, m in handled]
        assert len(bodies) == total and len(set(bodies)) == total


def test_an_async_worker_wakes_on_a_push_from_another_process(dsn: str) -> None:
    from mqlite.aio import AsyncQueue
    from mqlite.aio.worker import AsyncWorker

    handled: list[float] = []

    async def handle(message: Message) -> None:
        handled.append(time.time())

    async def main(q: mqlite.Queue) -> None:
        async with AsyncQueue(queue=q) as aq:
            w = AsyncWorker(aq, ["async"], handle, idle_min=5.0, idle_max=5.0, handle_signals=False)
            task = asyncio.create_task(w.run())
            with pusher(dsn) as proc:
                await asyncio.to_thread(wait_for, lambda: "async" in q.doorbell.listening)
                sent = await asyncio.to_thread(push_from, proc, "async")
                await asyncio.to_thread(wait_for, lambda: handled, 10)
                assert handled[0] - sent < 0.5, f"push → handler took {handled[0] - sent:.3f}s"
            w.stop()
            await asyncio.wait_for(task, 5)

    with mqlite.Queue(dsn, wake_bound=5.0) as q:
        asyncio.run(main(q))


def test_a_web_long_poll_wakes_on_a_push_from_another_process(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from mqlite.web import create_app, state

    monkeypatch.setattr(state, "FIRST_PAUSE", 5.0)  # the poll alone would take seconds
    monkeypatch.setattr(state, "MAX_PAUSE", 5.0)
    out: dict[str, object] = {}
    with mqlite.Queue(dsn, wake_bound=5.0) as q, TestClient(create_app(q, stats_ttl=0), base_url="http://127.0.0.1") as client, \
            pusher(dsn) as proc:
        def get() -> None:
            out["response"] = client.get("/q/web", params={"wait": "20"})
            out["at"] = time.time()

        t = threading.Thread(target=get, daemon=True)
        t.start()
        wait_for(lambda: "web" in q.doorbell.listening, what="the long-poll waiting on the bell")
        sent = push_from(proc, "web")
        t.join(15)
        assert out["response"].status_code == 200  # type: ignore[attr-defined]
        assert float(out["at"]) - sent < 0.5  # type: ignore[arg-type]


def test_close_ends_the_listener_and_a_new_wait_listens_again(dsn: str) -> None:
    # The second round's listener is new to the producer, whose cache names the first, gone: the
    # ring finds the holder gone, reads the holders again and rings the new one.
    with mqlite.Queue(dsn, wake_bound=5.0) as q, mqlite.Queue(dsn) as producer:
        for _ in range(2):
            woken: list[float] = []
            idle = IdleWait(5.0, 5.0, bell=q.doorbell, queues=["again"])
            def sleep(idle: IdleWait = idle, woken: list[float] = woken) -> None:
                idle.wait()
                woken.append(time.monotonic())

            t = threading.Thread(target=sleep, daemon=True)
            t.start()
            wait_for(lambda: "again" in q.doorbell.listening, what="the listener waiting")
            pushed = time.monotonic()
            producer.push("again", b"x")
            t.join(5)
            assert woken and woken[0] - pushed < 0.5
            started = time.monotonic()
            q.close()  # the listener ends and its session closes with it
            assert time.monotonic() - started < 3.0
            wait_for(lambda: q.doorbell.listening == () and q.doorbell._session is None, what="the listener gone")
            assert q.pop("again") is not None  # the Queue reopens on use, as before


def test_a_push_to_a_queue_nobody_waits_on_rings_nobody(q: mqlite.Queue) -> None:
    for _ in range(20):
        q.push("nobody", b"x")
    ((expires, holders),) = [q.doorbell.ringer._holders["nobody"]]
    assert holders == () and expires > time.monotonic()


@pytest.mark.parametrize("bound", [0.0, -1.0])
def test_the_wake_bound_must_be_positive(dsn: str, bound: float) -> None:
    with pytest.raises(ValueError):
        mqlite.Queue(dsn, wake_bound=bound)


KOMBU_PUBLISHER = """
import sys, time, kombu
conn = kombu.Connection(sys.argv[1], transport="mqlite.contrib.kombu:Transport")
producer = conn.Producer()
producer.publish("warm", routing_key="warm")
print("ready", flush=True)
for line in sys.stdin:
    sent = time.time()
    producer.publish(str(sent), routing_key=line.split()[0])
    print(sent, flush=True)
"""


def test_a_kombu_consumer_wakes_on_a_publish_from_another_process(dsn: str) -> None:
    kombu = pytest.importorskip("kombu")
    options = {"polling_interval": 5.0, "min_polling_interval": 5.0, "wake_bound": 5.0}
    got: list[float] = []
    stop = threading.Event()
    with kombu.Connection(dsn, transport="mqlite.contrib.kombu:Transport", transport_options=options) as conn:
        def drain() -> None:
            while not stop.is_set():
                try:
                    conn.drain_events(timeout=1)
                except TimeoutError:
                    pass

        queue = kombu.Queue("kq", routing_key="kq")
        with conn.Consumer([queue], callbacks=[lambda body, msg: (got.append(time.time()), msg.ack())]):
            thread = threading.Thread(target=drain, daemon=True)
            thread.start()
            proc = python(KOMBU_PUBLISHER, dsn)
            try:
                assert read_line(proc) == "ready"
                bell = conn.connection.mq.doorbell
                for n in range(2):
                    wait_for(lambda: "kq" in bell.listening, what="the consumer asleep on the bell")
                    proc.stdin.write("kq\n")  # type: ignore[union-attr]
                    proc.stdin.flush()  # type: ignore[union-attr]
                    sent = float(read_line(proc))
                    wait_for(lambda n=n: len(got) > n, timeout=10, what="the message delivered")
                    assert got[n] - sent < 0.5, f"publish → callback took {got[n] - sent:.3f}s"
            finally:
                stop.set()
                proc.kill()
                proc.wait(10)
                thread.join(10)


def test_a_listener_newer_than_a_pushers_cache_hears_a_push_within_the_cache_ttl(dsn: str) -> None:
    # The pusher reads the slots (nobody) and trusts that for HOLDERS_TTL; a listener that takes
    # its slot meanwhile is not rung, so its first looks must not sleep the whole bound (5 s here).
    with mqlite.Queue(dsn, wake_bound=5.0) as q, mqlite.Queue(dsn) as producer:
        producer.push("fresh", "first")  # the pusher's read of the slots: nobody listens
        assert q.pop("fresh") is not None
        woke: list[float] = []
        token = q.doorbell.generation
        listener = threading.Thread(target=lambda: (q.doorbell.wait(["fresh"], token, 10), woke.append(time.monotonic())))
        listener.start()
        wait_for(lambda: "fresh" in q.doorbell.listening, timeout=10, what="the listener in its first look")
        pushed = time.monotonic()
        producer.push("fresh", "second")  # within the pusher's cache: no ring
        listener.join(15)
        assert woke and woke[0] - pushed < 1.0, f"woke {woke[0] - pushed:.2f}s after the push" if woke else "never woke"
        assert q.pop("fresh") is not None
