"""The coalescer behind group claims and grouped acks, driven by a fake batch function: one batch in
flight, callers served in order, and nobody stalled or lost when a caller is interrupted."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator

import pytest

from mqlite.coalesce import Coalescer

from .helpers import wait_for


class Recorder:
    """A batch function that records its batches and can be held (blocked) or made to raise."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self.raise_once: BaseException | None = None
        self.lock = threading.Lock()

    def __call__(self, items: list[int]) -> list[int]:
        with self.lock:
            self.batches.append(list(items))
        self.entered.set()
        assert self.gate.wait(10)
        if self.raise_once is not None:
            exc, self.raise_once = self.raise_once, None
            raise exc
        return [i * 10 for i in items]


@pytest.fixture
def alarm() -> Iterator[None]:
    """SIGALRM raises KeyboardInterrupt in the main thread, as Ctrl-C would."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


def submit_all(c: Coalescer[int, int], items: list[int], results: dict[int, int]) -> list[threading.Thread]:
    def one(i: int) -> None:
        results[i] = c.submit(i)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in items]
    for t in threads:
        t.start()
    return threads


def test_callers_arriving_while_a_batch_runs_share_the_next_one() -> None:
    run = Recorder()
    c: Coalescer[int, int] = Coalescer(run, limit=100)
    run.gate.clear()
    results: dict[int, int] = {}
    first = submit_all(c, [0], results)
    assert run.entered.wait(10)
    rest = submit_all(c, list(range(1, 16)), results)
    wait_for(lambda: c._queued == 15, what="15 callers queued behind the running batch")
    run.gate.set()
    for t in first + rest:
        t.join(10)
    assert results == {i: i * 10 for i in range(16)}
    assert run.batches[0] == [0] and sorted(run.batches[1]) == list(range(1, 16)) and len(run.batches) == 2


def test_a_batch_takes_at_most_limit_by_size_but_always_one() -> None:
    run = Recorder()
    c: Coalescer[int, int] = Coalescer(run, limit=10, size=lambda n: n)
    run.gate.clear()
    results: dict[int, int] = {}
    first = submit_all(c, [1], results)
    assert run.entered.wait(10)
    rest = submit_all(c, [4, 5, 30], results)  # 4 + 5 fit in 10; 30 alone exceeds it
    wait_for(lambda: c._queued == 39, what="the three callers queued")
    run.gate.set()
    for t in first + rest:
        t.join(10)
    assert results == {1: 10, 4: 40, 5: 50, 30: 300}
    assert all(sum(b) <= 10 or len(b) == 1 for b in run.batches)


def test_an_error_reaches_every_caller_of_the_batch_and_the_next_batch_runs() -> None:
    run = Recorder()
    c: Coalescer[int, int] = Coalescer(run, limit=100)
    run.raise_once = RuntimeError("deadlock")
    with pytest.raises(RuntimeError):
        c.submit(1)
    assert c.submit(2) == 20


def test_a_leader_interrupted_while_gathering_does_not_stall_the_next_caller(alarm: None) -> None:
    run = Recorder()
    c: Coalescer[int, int] = Coalescer(run, limit=100, gather=30.0)
    c.last = 5  # the previous batch had five callers: a lone leader waits for company
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    with pytest.raises(KeyboardInterrupt):
        c.submit(1)  # gathers for up to 30 s; Ctrl-C arrives after 0.2 s
    results: dict[int, int] = {}
    c.last = 1
    (t,) = submit_all(c, [2], results)
    t.join(10)  # a leadership left behind would make this wait forever
    assert not t.is_alive() and results == {2: 20}
    assert run.batches == [[2]]  # the interrupted caller's item left with it


def test_an_interrupted_ack_still_goes_with_the_next_batch(alarm: None) -> None:
    run = Recorder()
    c: Coalescer[int, int] = Coalescer(run, limit=100, gather=30.0, keep_interrupted=True)
    c.last = 5
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    with pytest.raises(KeyboardInterrupt):
        c.submit(1)
    c.last = 1
    results: dict[int, int] = {}
    (t,) = submit_all(c, [2], results)
    t.join(10)
    assert not t.is_alive() and results == {2: 20}
    assert run.batches == [[1, 2]]


def test_a_leader_interrupted_mid_batch_hands_the_others_to_a_new_leader() -> None:
    run = Recorder()
    c: Coalescer[int, int] = Coalescer(run, limit=100)
    run.gate.clear()
    run.raise_once = KeyboardInterrupt()
    outcome: list[BaseException] = []

    def leader() -> None:
        try:
            c.submit(0)
        except BaseException as exc:
            outcome.append(exc)

    lead = threading.Thread(target=leader, daemon=True)
    lead.start()
    assert run.entered.wait(10)
    results: dict[int, int] = {}
    others = submit_all(c, [1, 2, 3], results)
    wait_for(lambda: c._queued == 3, what="three callers behind the leader")
    run.gate.set()  # the first batch raises KeyboardInterrupt in the leader
    for t in [lead, *others]:
        t.join(10)
    assert isinstance(outcome[0], KeyboardInterrupt)
    assert results == {1: 10, 2: 20, 3: 30}


def test_a_result_whose_caller_left_mid_batch_goes_to_abandoned(alarm: None) -> None:
    """The main thread's item is in a batch another thread leads; it is interrupted while that batch
    runs: its result is handed to `abandoned`, not dropped (a claimed row would be lost)."""
    left = threading.Event()

    def run(items: list[int]) -> list[int]:
        if 7 in items:
            signal.setitimer(signal.ITIMER_REAL, 0.01)  # Ctrl-C for the main thread, waiting on us
            assert left.wait(10)
        return [i * 10 for i in items]

    given_back: list[int] = []
    c: Coalescer[int, int] = Coalescer(run, limit=100, gather=30.0, abandoned=given_back.append)
    c.last = 2  # the leader gathers until a second caller is there
    results: dict[int, int] = {}
    (lead,) = submit_all(c, [1], results)
    wait_for(lambda: c._target == 2, what="the leader gathering")
    with pytest.raises(KeyboardInterrupt):
        c.submit(7)
    left.set()
    lead.join(10)
    assert results == {1: 10}
    wait_for(lambda: given_back == [70], what="the abandoned result given back")
