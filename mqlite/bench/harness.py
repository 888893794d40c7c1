"""Drive client threads (and processes) against a server, bounded in time or count, and measure.

A *driver* is the client side of one strategy in one process (an mqlite `Queue`, plain driver
connections, a huey or RQ handle). Each client thread asks it for a *worker*, a callable doing
one operation and returning how many messages it handled; it raises `Empty` when the queue has
nothing ready. Workers are built before the clock starts, so connecting is never timed.

`run` starts every thread of every group at once (behind a barrier; with `processes > 1`,
behind a barrier shared by the processes too), stops them at the deadline or when their budget
of messages is spent, and returns one `GroupStats` per group: messages, elapsed time, per-call
latencies, errors and extra samples (e.g. end-to-end latency) the driver recorded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

START_TIMEOUT = 120.0  # seconds to wait for every client to connect before giving up
TICK = 0.2  # seconds between progress reports


class Empty(Exception):
    """Raised by a worker when its queue has nothing ready."""


class Worker(Protocol):
    def __call__(self) -> int: ...


class Driver(Protocol):
    """The client side of one strategy in one process."""

    def prepare(self, clients: int) -> None:
        """Called once before the clients start, with how many run in this process."""

    def worker(self, role: str, index: int) -> Worker:
        """A worker for client `index` (unique across processes), built in that client's thread."""

    def samples(self) -> dict[str, list[float]]:
        """Extra samples in seconds recorded by the workers, by name (merged across processes)."""

    def close(self) -> None: ...


DriverFactory = Callable[[], Driver]  # picklable (a functools.partial of a class) for processes
Tick = Callable[[float, int], None]  # (fraction of the bound done, messages so far)


@dataclass(frozen=True)
class Bound:
    """Run for `seconds`, or until `messages` were handled; never longer than `cap` seconds."""

    seconds: float | None = None
    messages: int | None = None
    cap: float = 120.0

    def __post_init__(self) -> None:
        if (self.seconds is None) == (self.messages is None):
            raise ValueError("give exactly one of seconds or messages")

    @property
    def limit(self) -> float:
        return min(self.seconds, self.cap) if self.seconds is not None else self.cap


@dataclass(frozen=True)
class Group:
    """`clients` threads doing `role`. Each call handles `per_call` messages (for the count budget)."""

    role: str
    clients: int
    per_call: int = 1
    stop_on_empty: bool = True  # False: on Empty, sleep `idle` seconds and try again
    idle: float = 0.001
    budget: int | None = None  # messages for this group in count mode (default: the bound's)


@dataclass
class GroupStats:
    role: str
    clients: int
    messages: int = 0
    calls: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds per call, sorted
    errors: int = 0
    error: str | None = None
    drained: bool = False  # some client found the queue empty and stopped
    truncated: bool = False  # count mode hit the time cap
    samples: dict[str, list[float]] = field(default_factory=dict)
    cpu_seconds: float = 0.0  # client CPU time of the process(es) during the run

    @property
    def rate(self) -> float:
        return self.messages / self.elapsed if self.elapsed > 0 else 0.0


def percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of sorted values; None when there are none."""
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


class _Budget:
    """Calls left for a group in count mode (None: unlimited)."""

    def __init__(self, calls: int | None) -> None:
        self.left = calls
        self.lock = threading.Lock()

    def take(self) -> bool:
        if self.left is None:
            return True
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True

    def give_back(self) -> None:
        if self.left is not None:
            with self.lock:
                self.left += 1


def _calls(group: Group, bound: Bound) -> int | None:
    messages = group.budget if group.budget is not None else bound.messages
    return None if messages is None else -(-messages // group.per_call)


def run(
    make_driver: DriverFactory,
    groups: Sequence[Group],
    bound: Bound,
    *,
    processes: int = 1,
    tick: Tick | None = None,
) -> list[GroupStats]:
    """Run `groups` of client threads (split over `processes`) within `bound`; one GroupStats each."""
    groups = [g for g in groups if g.clients > 0]
    if processes <= 1:
        return _run_here(make_driver, groups, bound, tick=tick)
    from .procs import run_processes  # procs builds on this module

    return run_processes(make_driver, groups, bound, processes, tick)


def _run_here(
    make_driver: DriverFactory,
    groups: Sequence[Group],
    bound: Bound,
    *,
    offset: int = 0,
    tick: Tick | None = None,
    gate: Any = None,
    report: Callable[[int], None] | None = None,
) -> list[GroupStats]:
    driver = make_driver()
    try:
        return _drive(driver, groups, bound, offset=offset, tick=tick, gate=gate, report=report)
    finally:
        driver.close()


def _drive(
    driver: Driver,
    groups: Sequence[Group],
    bound: Bound,
    *,
    offset: int,
    tick: Tick | None,
    gate: Any,
    report: Callable[[int], None] | None,
) -> list[GroupStats]:
    total = sum(g.clients for g in groups)
    driver.prepare(total)
    barrier = threading.Barrier(total + 1)
    stop = threading.Event()
    stats = [GroupStats(g.role, g.clients) for g in groups]
    budgets = [_Budget(_calls(g, bound)) for g in groups]
    counts = [0] * total
    lats: list[list[float]] = [[] for _ in range(total)]
    ended = [0.0] * total
    errors: list[tuple[int, str]] = []  # (group, first line of the error)
    drained = [False] * len(groups)
    began = [0.0]

    def client(slot: int, gi: int) -> None:
        group, budget, mine = groups[gi], budgets[gi], lats[slot]
        clock = time.perf_counter
        op: Any = None
        work: Any = None
        try:
            op = driver.worker(group.role, offset + slot)
            work = getattr(op, "call", op)  # skip one layer of indirection per call
        except Exception as exc:  # noqa: BLE001 - reported as the row's error
            errors.append((gi, _describe(exc)))
        try:
            barrier.wait(START_TIMEOUT)
        except threading.BrokenBarrierError:
            work = None
        try:
            while work is not None and not stop.is_set() and budget.take():
                t0 = clock()
                try:
                    n = work()
                except Empty:
                    budget.give_back()
                    if group.stop_on_empty:
                        drained[gi] = True
                        break
                    time.sleep(group.idle)
                    continue
                except Exception as exc:  # noqa: BLE001
                    errors.append((gi, _describe(exc)))
                    break
                mine.append(clock() - t0)
                counts[slot] += n
        finally:
            ended[slot] = clock()
            close = getattr(op, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001 - closing is best effort
                    pass

    threads: list[threading.Thread] = []
    slot = 0
    slots_of: list[range] = []
    for gi, g in enumerate(groups):
        slots_of.append(range(slot, slot + g.clients))
        for _ in range(g.clients):
            threads.append(threading.Thread(target=client, args=(slot, gi), daemon=True))
            slot += 1
    for t in threads:
        t.start()
    if gate is not None:
        gate.wait(START_TIMEOUT)
    cpu0 = time.process_time()
    barrier.wait(START_TIMEOUT)
    began[0] = time.perf_counter()
    limit = bound.limit
    truncated = False
    while any(t.is_alive() for t in threads):
        now = time.perf_counter() - began[0]
        if now >= limit and not stop.is_set():
            stop.set()
            truncated = bound.seconds is None
        done = sum(counts)
        if report is not None:
            report(done)
        if tick is not None:
            tick(_fraction(bound, now, done), done)
        next(iter(t for t in threads if t.is_alive()), threads[0]).join(TICK)
    cpu = time.process_time() - cpu0
    for gi in range(len(groups)):
        s = stats[gi]
        mine = slots_of[gi]
        s.messages = sum(counts[i] for i in mine)
        merged = [x for i in mine for x in lats[i]]
        merged.sort()
        s.latencies = merged
        s.calls = len(merged)
        s.elapsed = max((ended[i] for i in mine), default=began[0]) - began[0]
        group_errors = [e for g_, e in errors if g_ == gi]
        s.errors = len(group_errors)
        s.error = group_errors[0] if group_errors else None
        s.drained = drained[gi]
        s.truncated = truncated
        s.cpu_seconds = cpu
    if report is not None:
        report(sum(counts))
    samples = driver.samples()
    for s in stats:
        s.samples = {k: sorted(v) for k, v in samples.items()}
    return stats


def _fraction(bound: Bound, elapsed: float, done: int) -> float:
    if bound.seconds is not None:
        return min(1.0, elapsed / bound.limit)
    assert bound.messages is not None
    return min(1.0, max(done / bound.messages, elapsed / bound.cap))


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
