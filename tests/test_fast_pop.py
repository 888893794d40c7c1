"""The fast pop path under load: 64 threads, exactly once; a process killed with claims in hand loses nothing."""

from __future__ import annotations

import signal
import threading
from collections import Counter

import pytest

import mqlite

from .conftest import rows
from .helpers import python, read_line, wait_for


@pytest.mark.parametrize("mode", ["pop", "claim"])
def test_sixty_four_threads_take_each_message_exactly_once(q: mqlite.Queue, dsn: str, admin, mode: str) -> None:
    ids = q.push_many("fast", [f"m{i}" for i in range(4000)])
    many = mqlite.Queue(dsn, pool_size=70)
    got: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        while True:
            if mode == "pop":
                m = many.pop("fast")
                if m is None:
                    return
                with lock:
                    got.append(m.id)
            else:
                with many.claim("fast") as m:
                    if m is None:
                        return
                    with lock:
                        got.append(m.id)

    threads = [threading.Thread(target=work) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    counts = Counter(got)
    assert sorted(counts) == ids and max(counts.values()) == 1
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]
    many.close()


HOLDERS = """
import sys, threading, mqlite
q = mqlite.Queue(sys.argv[1], pool_size=40, recover_every=0)
held = threading.Barrier(33)
def hold():
    with q.claim("fast") as m:
        held.wait()
        threading.Event().wait()  # hold the claim until the process is killed
for _ in range(32):
    threading.Thread(target=hold, daemon=True).start()
held.wait()
print("holding", flush=True)
threading.Event().wait()
"""


def test_a_process_killed_with_32_claims_in_hand_loses_none(q: mqlite.Queue, dsn: str, admin) -> None:
    ids = q.push_many("fast", [f"m{i}" for i in range(100)])
    holder = python(HOLDERS, dsn)
    assert read_line(holder) == "holding"
    assert q.stats().queues["fast"].claimed == 32
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    recovered = []
    wait_for(lambda: recovered.append(q.recover().dead_owner) or sum(recovered) == 32, what="the 32 orphaned claims")
    taken = []
    while (m := q.pop("fast")) is not None:
        taken.append(m.id)
    assert sorted(taken) == ids  # every message still there, once


def test_a_pop_interrupted_while_claiming_does_not_stall_the_next_one(q: mqlite.Queue) -> None:
    """The leader of a claim is interrupted (Ctrl-C) as it opens its claim session: the next pop is
    served, and nothing is lost. (Interruptions while gathering: tests/test_coalesce.py.)"""
    q.push_many("fast", ["one", "two"])
    opened = q._pool.open_session
    calls = 0

    def interrupted_once(**kw):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyboardInterrupt
        return opened(**kw)

    q._pool.open_session = interrupted_once  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        q.pop("fast")
    got: list[str] = []
    t = threading.Thread(target=lambda: got.append(q.pop("fast").text()), daemon=True)
    t.start()
    t.join(timeout=10)  # a leadership left behind would make this wait forever
    assert not t.is_alive() and got == ["one"]
    assert q.pop("fast").text() == "two"
