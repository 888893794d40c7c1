"""Producers and consumers through a faulty network, and what they must never see.

`run(direct_dsn, faulty_dsn, seconds)` runs 8 producer and 8 consumer threads for `seconds`
through `faulty_dsn` (a relay between them and the server), then drains every queue, and returns
a `Report`: what was acknowledged, what was handled (by whom, when), how long each call took, and
how many retries the library logged. The checks are `Report.problems()`; the figures `summary()`.

- 4 producers push with a unique key (queue "keyed", never consumed while they run: a key is
  unique only while its message is in the table, so a consumer could otherwise delete the first
  copy before a retry lands);
- 4 producers push without one (queue "plain"), one of them 3 messages at a time with push_many;
- 8 consumers claim from "plain" (two Queues of 4 threads: two processes' worth of sessions),
  hold each message a moment, and acknowledge it; afterwards they drain "keyed" the same way.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import mqlite
from mqlite.errors import Duplicate, MqliteError
from mqlite.testing import admin_connection

T = TypeVar("T")
PRODUCERS = 8
CONSUMERS = 8
KEYED, PLAIN = "keyed", "plain"
BACKLOG = 300  # producers of "plain" pause while this many acknowledged pushes wait unhandled


@dataclass
class Handling:
    body: str
    id: int
    consumer: int
    attempts: int  # the message's attempts when taken: recovery of a lost claim adds one
    taken: float  # monotonic time `take` returned
    acking: float  # monotonic time `ack` was called
    acked: bool | None  # ack's answer; None when it raised


@dataclass
class Report:
    keyed_returned: dict[str, int] = field(default_factory=dict)  # key -> id returned
    keyed_raised: Counter[str] = field(default_factory=Counter)
    plain_returned: set[str] = field(default_factory=set)  # bodies whose push returned
    plain_raised: Counter[str] = field(default_factory=Counter)
    keyed_rows: dict[str, int] = field(default_factory=dict)  # key -> rows with it, before the drain
    handlings: list[Handling] = field(default_factory=list)
    consume_errors: Counter[str] = field(default_factory=Counter)
    calls: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    retries: Counter[str] = field(default_factory=Counter)
    left_in_table: int = -1
    drained: bool = False
    seconds: float = 0.0
    drain_seconds: float = 0.0
    slowest: tuple[float, str, str, float] = (0.0, "", "", 0.0)  # (seconds, verb, thread, start)

    def max_call(self) -> tuple[str, float]:
        verb, times = max(self.calls.items(), key=lambda kv: max(kv[1], default=0.0))
        return verb, max(times, default=0.0)

    def duplicates(self) -> dict[str, int]:
        """Deliveries beyond the first: of a second row for one push (a lost push reply, retried),
        and of one row again (its claim was lost: the claim session died, recovery put it back)."""
        ids_by_body: dict[str, set[int]] = defaultdict(set)
        per_id = Counter(h.id for h in self.handlings)
        for h in self.handlings:
            ids_by_body[h.body].add(h.id)
        return {
            "extra rows from lost push replies": sum(len(ids) - 1 for ids in ids_by_body.values()),
            "redeliveries of one row": sum(n - 1 for n in per_id.values()),
        }

    def problems(self, bound: float) -> list[str]:
        """Every broken promise, in words (empty: none)."""
        found = []
        handled = {h.body for h in self.handlings}
        lost_plain = self.plain_returned - handled
        if lost_plain:
            found.append(f"{len(lost_plain)} acknowledged pushes never handled, e.g. {sorted(lost_plain)[:3]}")
        lost_keyed = set(self.keyed_returned) - handled
        if lost_keyed:
            found.append(f"{len(lost_keyed)} acknowledged keyed pushes never handled, e.g. {sorted(lost_keyed)[:3]}")
        not_one = {k: self.keyed_rows.get(k, 0) for k in self.keyed_returned if self.keyed_rows.get(k, 0) != 1}
        if not_one:
            found.append(f"keys whose push returned without exactly one row: {dict(list(not_one.items())[:5])}")
        if self.keyed_raised.get("Duplicate"):
            found.append(f"{self.keyed_raised['Duplicate']} keyed pushes raised Duplicate for a key pushed once")
        found += self._overlaps()
        if not self.drained or self.left_in_table:
            found.append(f"the table did not end empty: {self.left_in_table} rows left (drained: {self.drained})")
        verb, longest = self.max_call()
        if longest > bound:
            found.append(f"a {verb} call took {longest:.1f}s, over the bound of {bound:.1f}s")
        return found

    def _overlaps(self) -> list[str]:
        """Two consumers holding one message at once while both claims were live.

        A claim ends when its message is acknowledged, or when recovery puts it back (its claim
        session died): recovery counts an attempt. So if two handlings of one message overlap in
        time, the later claim must have seen more attempts than the earlier one (the row was
        recovered in between, and the earlier consumer's claim was already lost: at-least-once);
        with as many attempts, the later claim took a row another consumer still held.
        """
        by_id: dict[int, list[Handling]] = defaultdict(list)
        for h in self.handlings:
            by_id[h.id].append(h)
        found = []
        for hs in by_id.values():
            hs.sort(key=lambda h: h.taken)
            for i, earlier in enumerate(hs):
                for later in hs[i + 1:]:
                    if later.taken < earlier.acking and later.attempts <= earlier.attempts:
                        found.append(f"message {earlier.id} held by consumers {earlier.consumer} and "
                                     f"{later.consumer} at once, both claims live (attempts {earlier.attempts})")
        return found[:5]

    def summary(self) -> dict[str, Any]:
        verb, longest = self.max_call()
        return {
            "seconds": round(self.seconds, 1),
            "drain seconds": round(self.drain_seconds, 1),
            "pushes acknowledged": len(self.plain_returned) + len(self.keyed_returned),
            "pushes that raised": sum(self.plain_raised.values()) + sum(self.keyed_raised.values()),
            "handled": len(self.handlings),
            **self.duplicates(),
            "retries": dict(self.retries),
            "consumer errors": dict(self.consume_errors),
            "calls": {v: _spread(t) for v, t in sorted(self.calls.items())},
            "max call": f"{verb} {longest:.2f}s",
        }


def _spread(times: list[float]) -> str:
    """count, median, 99th percentile and maximum of call times."""
    ordered = sorted(times)
    if not ordered:
        return "0"
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"{len(ordered)} calls, median {ordered[len(ordered) // 2] * 1000:.1f} ms, p99 {p99 * 1000:.0f} ms, max {ordered[-1]:.2f} s"


class _Retries(logging.Handler):
    """Counts the retries mqlite logs, by the kind of error retried."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.kinds: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "transient error, retrying (attempt %d): %s" and record.args:
            exc = record.args[1] if isinstance(record.args, tuple) else None
            code = getattr(exc, "code", None)
            self.kinds[f"{type(exc).__name__}{f' {code}' if code else ''}"] += 1


def run(direct_dsn: str, faulty_dsn: str, seconds: float, *, queue_options: dict[str, Any],
        heal: Callable[[], None] = lambda: None, drain_for: float = 120.0, seed: int = 0) -> Report:
    """The load through `faulty_dsn`; `direct_dsn` reaches the same database without the relay.

    `heal()` is called when the producers have stopped: the consumers then drain every queue
    through a network that no longer fails, and must leave the table empty (nothing stuck)."""
    report = Report()
    lock = threading.Lock()
    producing = threading.Event()
    producing.set()
    consuming = threading.Event()
    consuming.set()
    drain_keyed = threading.Event()
    retries = _Retries()
    logger = logging.getLogger("mqlite")
    logger.addHandler(retries)
    level = logger.level
    logger.setLevel(logging.DEBUG)

    def timed(verb: str, call: Callable[[], T]) -> T:
        start = time.monotonic()
        try:
            return call()
        finally:
            elapsed = time.monotonic() - start
            with lock:
                report.calls[verb].append(elapsed)
                if elapsed > report.slowest[0]:
                    report.slowest = (elapsed, verb, threading.current_thread().name, start)

    producers_q = mqlite.Queue(faulty_dsn, pool_size=PRODUCERS, **queue_options)
    consumer_qs = [mqlite.Queue(faulty_dsn, pool_size=CONSUMERS, **queue_options) for _ in range(2)]

    def produce(n: int) -> None:
        keyed, batch = n < PRODUCERS // 2, n == PRODUCERS - 1
        i = 0
        while producing.is_set():
            if not keyed and len(report.plain_returned) - len(report.handlings) > BACKLOG:
                time.sleep(0.005)  # back-pressure, so the run ends with a short drain
                continue
            i += 1
            name = f"p{n}-{i}"
            try:
                if keyed:
                    time.sleep(0.05)  # a steady trickle: every keyed row waits for the drain
                    new_id = timed("push", partial(producers_q.push, KEYED, name, unique_key=name))
                    with lock:
                        report.keyed_returned[name] = new_id
                elif batch:
                    bodies = [f"{name}.{j}" for j in range(3)]
                    timed("push_many", partial(producers_q.push_many, PLAIN, bodies))
                    with lock:
                        report.plain_returned.update(bodies)
                else:
                    timed("push", partial(producers_q.push, PLAIN, name))
                    with lock:
                        report.plain_returned.add(name)
            except Duplicate:
                with lock:
                    report.keyed_raised["Duplicate"] += 1
            except MqliteError as exc:
                with lock:
                    (report.keyed_raised if keyed else report.plain_raised)[type(exc).__name__] += 1

    def consume(n: int) -> None:
        q = consumer_qs[n % 2]
        rng = random.Random(seed * 1000 + n)
        while consuming.is_set():
            name = KEYED if drain_keyed.is_set() and rng.random() < 0.5 else PLAIN
            try:
                m = timed("take", partial(q.take, name, lease=60))
            except MqliteError as exc:
                with lock:
                    report.consume_errors[type(exc).__name__] += 1
                continue
            if m is None:
                continue
            taken = time.monotonic()
            time.sleep(rng.random() * 0.003)  # the work
            acking = time.monotonic()
            try:
                acked: bool | None = timed("ack", partial(q.ack, m))
            except MqliteError as exc:
                acked = None
                with lock:
                    report.consume_errors[type(exc).__name__] += 1
            with lock:
                report.handlings.append(Handling(m.text(), m.id, n, m.attempts, taken, acking, acked))

    admin = admin_connection(direct_dsn)

    def left(queue: str | None = None) -> int:
        cur = admin.cursor()
        if queue is None:
            cur.execute("SELECT COUNT(*) FROM mqlite_messages")
        else:
            cur.execute("SELECT COUNT(*) FROM mqlite_messages WHERE queue = %s", (queue,))
        (count,) = cur.fetchone()
        cur.close()
        return int(count)

    threads = [threading.Thread(target=produce, args=(n,), name=f"producer-{n}") for n in range(PRODUCERS)]
    threads += [threading.Thread(target=consume, args=(n,), name=f"consumer-{n}") for n in range(CONSUMERS)]
    started = time.monotonic()
    try:
        for t in threads:
            t.start()
        time.sleep(seconds)  # the load runs for this long: a duration, not a synchronisation
        producing.clear()
        for t in threads[:PRODUCERS]:
            t.join(timeout=drain_for)
        report.seconds = time.monotonic() - started
        heal()
        cur = admin.cursor()
        cur.execute("SELECT unique_key, COUNT(*) FROM mqlite_messages WHERE queue = %s GROUP BY unique_key", (KEYED,))
        report.keyed_rows = {str(k): int(n) for k, n in cur.fetchall()}
        cur.close()
        drain_keyed.set()
        deadline = time.monotonic() + drain_for
        while time.monotonic() < deadline and left():
            time.sleep(0.1)
        report.drained = left() == 0
        report.drain_seconds = time.monotonic() - started - report.seconds
    finally:
        producing.clear()
        consuming.clear()
        for t in threads:
            t.join(timeout=drain_for)
        hung = [t.name for t in threads if t.is_alive()]
        for q in (producers_q, *consumer_qs):
            q.close()
        report.left_in_table = left()
        admin.close()
        logger.removeHandler(retries)
        logger.setLevel(level)
        report.retries = retries.kinds
    if hung:
        raise AssertionError(f"threads still running {drain_for:g}s after the load stopped: {hung}")
    return report
