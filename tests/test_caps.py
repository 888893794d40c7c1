"""Concurrency caps per key: at most max_running messages of a key handed out at once."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter

import mqlite

from .conftest import rows
from .helpers import python, read_line, wait_for


def claimed_per_key(admin) -> Counter:
    return Counter(dict(rows(admin, "SELECT concurrency_key, COUNT(*) FROM mqlite_messages "
                                    "WHERE owner <> 0 AND concurrency_key IS NOT NULL GROUP BY concurrency_key")))


def test_cap_holds_across_sixteen_consumers_and_everything_is_processed(q: mqlite.Queue, admin) -> None:
    ids = {q.push("jobs", f"{k}:{i}", concurrency_key=f"user:{k}", max_running=2): k for i in range(40) for k in range(5)}
    handled: list[int] = []
    lock = threading.Lock()
    peak = Counter()
    running = threading.Event()
    running.set()

    def consume() -> None:
        idle_since = None
        while True:
            with q.claim("jobs") as m:
                if m is None:
                    if idle_since is None:
                        idle_since = time.monotonic()
                    with lock:
                        if len(handled) == len(ids):
                            return
                    if time.monotonic() - idle_since > 60:
                        return
                    continue
                idle_since = None
                time.sleep(0.005)  # the work itself
                with lock:
                    handled.append(m.id)

    def sample() -> None:
        while running.is_set():  # sampled from the table during the run
            for key, n in claimed_per_key(admin).items():
                peak[key] = max(peak[key], n)

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=consume) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    running.clear()
    sampler.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert sorted(handled) == sorted(ids)  # all processed, once each
    assert peak and max(peak.values()) <= 2, peak  # never more than two of a key at once
    assert max(peak.values()) == 2  # and the cap was actually reached (the test could have failed)


def test_unkeyed_messages_ignore_caps_and_keys_are_independent(q: mqlite.Queue) -> None:
    q.push("jobs", b"a1", concurrency_key="a", max_running=1)
    q.push("jobs", b"a2", concurrency_key="a", max_running=1)
    q.push("jobs", b"b1", concurrency_key="b", max_running=1)
    q.push("jobs", b"free")
    held = [q.take("jobs") for _ in range(4)]
    assert sorted(m.body for m in held if m is not None) == [b"a1", b"b1", b"free"]  # a2 waits for a1
    a1 = next(m for m in held if m is not None and m.body == b"a1")
    assert q.ack(a1)
    a2 = q.take("jobs")
    assert a2.body == b"a2"  # taken as soon as the slot freed


def test_failure_and_release_free_the_slot(q: mqlite.Queue) -> None:
    for i in range(3):
        q.push("jobs", f"k{i}", concurrency_key="k", max_running=1)
    first = q.take("jobs")
    assert q.take("jobs") is None
    q.nack(first, "boom", delay=60)  # waits out its backoff without holding the slot
    second = q.take("jobs")
    assert second.body == b"k1"
    q.release(second, delay=60)
    third = q.take("jobs")
    assert third.body == b"k2"
    q.fail(third, "give up")
    assert q.take("jobs") is None  # the other two wait out their delays


KEYED_CONSUMER = """
import sys, mqlite
q = mqlite.Queue(sys.argv[1], recover_every=0)
m = q.take("jobs")
print(m.id, flush=True)
sys.stdin.read()
"""


def test_a_killed_consumer_keeps_its_slot_until_its_claim_comes_back(q: mqlite.Queue, dsn: str, admin) -> None:
    first = q.push("jobs", b"one", concurrency_key="k", max_running=1)
    q.push("jobs", b"two", concurrency_key="k", max_running=1)
    consumer = python(KEYED_CONSUMER, dsn)
    assert int(read_line(consumer)) == first
    consumer.send_signal(signal.SIGKILL)
    consumer.wait(timeout=10)
    patient = mqlite.Queue(dsn, recover_every=0)  # a consumer that never recovers by itself
    assert patient.take("jobs") is None  # the dead claim still holds the only slot
    wait_for(lambda: q.recover().dead_owner == 1, what="recovery of the dead claim")
    again = patient.take("jobs")
    assert again.id == first  # the slot came back with the claim, not to the next message
    assert q.take("jobs") is None
    assert claimed_per_key(admin)["k"] == 1
    patient.close()
