"""What a user feels: consumers as `mqlite worker` processes, a drain, and a producer at a fixed rate.

- drain: `messages` no-op messages seeded into a paused queue; the workers start, the queue is
  resumed, and the clock runs until every message is acknowledged (msg/s, at-least-once).
- paced (mixed --rate R): an open-loop producer pushes R msg/s for `seconds`, each message stamped
  with its push time; the workers' handler records push -> handler. A rate is *kept up* when the
  producer reached it, every message pushed was handled with p99 <= `P99_LIMIT`, and the backlog
  did not grow (its trend over the second half below 2% of R, or what is left at the end no more
  than `P99_LIMIT` of pushing).
- find-max: the claim-alone rate of the same workers (a drain of a seeded backlog), then paced runs
  searching the highest rate kept up: 0.5x, 0.7x, then halving the gap between kept and lost.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..queue import Queue
from . import drivers, harness
from .report import Result
from .workerprocs import WorkerProcesses

P99_LIMIT = 0.100  # seconds: push -> handler p99 of a rate kept up
HALF_P99_LIMIT = 0.025  # seconds: the goal at 0.5x the claim-alone rate
TREND_SHARE = 0.02  # a backlog growing faster than this share of the rate is not kept up
PRODUCER_RATE = 1500  # msg/s one producer thread is given (more threads for higher rates)
DRAIN_GRACE = 5.0  # seconds after a paced run for the last messages to be handled
SEARCH_STEPS = 3  # bisections after the 0.5x and 0.7x probes

Tell = Callable[[str, float, int], None]


@dataclass(frozen=True)
class Consumers:
    processes: int = 2
    concurrency: int = 16


def _row(scenario: str, consumers: Consumers) -> Result:
    return Result(scenario, "mqlite-worker", "mqlite", consumers.processes * consumers.concurrency,
                  consumers.processes)


def _wait_acked(q: Queue, queue: str, timeout: float, poll: float = 0.01) -> bool:
    """Until nothing of `queue` is left in the table (every message acknowledged)."""
    deadline = time.monotonic() + timeout
    while q.peek(queue, 1):
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True


def drain_once(q: Queue, workers: WorkerProcesses, case: drivers.Case, messages: int, consumers: Consumers,
               stamped: bool, tell: Tell, cap: float) -> Result:
    """Seed `messages` into the paused queue, resume it, time until all are acknowledged."""
    row = _row("drain", consumers)
    q.pause(case.queue)
    data = drivers.stamped(case.body_size) if stamped else drivers.body(case.body_size)
    done = 0
    while done < messages:
        n = min(drivers.SEED_CHUNK, messages - done)
        q.push_many(case.queue, [data] * n)
        done += n
        tell("seeding the drain", done / messages, done)
    row.backlog = messages
    cpu0 = workers.cpu()
    tell("drain", 0.0, 0)
    began = time.perf_counter()
    q.resume(case.queue)
    finished = _wait_acked(q, case.queue, cap, poll=0.005)
    row.seconds = round(time.perf_counter() - began, 3)
    row.client_cpu_s = round(workers.cpu() - cpu0, 3)
    left = len(q.peek(case.queue, 10_000)) if not finished else 0
    row.messages = messages - left
    row.truncated = not finished
    row.drained = finished
    row.rate = round(row.messages / row.seconds, 1) if row.seconds else 0.0
    return row


def paced_once(q: Queue, workers: WorkerProcesses, case: drivers.Case, rate: float, seconds: float,
               consumers: Consumers, tell: Tell) -> Result:
    """Push `rate` msg/s for `seconds` (open loop) while the workers consume; judge push -> handler."""
    row = _row("mixed", consumers)
    row.target_rate = round(rate, 1)
    threads = max(1, min(32, math.ceil(rate / PRODUCER_RATE)))
    pushed = [0] * threads
    last = [0.0] * threads  # when each producer's last push returned
    stop = threading.Event()
    began = time.monotonic() + 0.05
    end = began + seconds

    def produce(i: int) -> None:
        k = 0
        while not stop.is_set():
            due = began + (i + k * threads) / rate
            if due >= end:
                return
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            q.push(case.queue, drivers.stamped(case.body_size))
            last[i] = time.monotonic()
            pushed[i] += 1
            k += 1

    backlog: list[tuple[float, int]] = []
    producers = [threading.Thread(target=produce, args=(i,), daemon=True) for i in range(threads)]
    cpu0 = workers.cpu()
    for t in producers:
        t.start()
    try:
        while any(t.is_alive() for t in producers):
            now = time.monotonic()
            backlog.append((now, q.size(case.queue)))
            tell(f"mixed at {rate:,.0f} msg/s", min(1.0, (now - began) / seconds), sum(pushed))
            time.sleep(0.25)
    finally:
        stop.set()
        for t in producers:
            t.join()
    pushed_at_end = max([end, *last])
    row.backlog = q.size(case.queue)
    acked = _wait_acked(q, case.queue, DRAIN_GRACE)
    row.client_cpu_s = round(workers.cpu() - cpu0, 3)
    row.pushed = sum(pushed)
    # The handler's samples land in files every 0.1 s: wait (bounded) for this run's to be there.
    mine: list[float] = []
    deadline = time.monotonic() + 2.0
    while True:
        mine = sorted(lat for at, lat in workers.samples() if began - 0.01 <= at <= pushed_at_end)
        if len(mine) >= row.pushed or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    row.consumed = len(mine)
    row.messages = len(mine)
    row.seconds = round(pushed_at_end - began, 3)
    row.rate = round(row.pushed / row.seconds, 1) if row.seconds else 0.0  # what the producer reached
    # A message never handled counts as late as can be: the percentiles are over everything pushed.
    late = [math.inf] * max(0, row.pushed - len(mine))
    every = mine + late
    row.e2e_p50_ms = _ms(harness.percentile(every, 0.50))
    row.e2e_p99_ms = _ms(harness.percentile(every, 0.99))
    row.backlog_trend = round(_trend(backlog[len(backlog) // 2:]), 1)
    row.unhandled = len(late)
    row.kept_up = bool(
        acked and row.pushed >= 0.95 * rate * seconds and not late
        and row.e2e_p99_ms is not None and row.e2e_p99_ms <= P99_LIMIT * 1e3
        and (row.backlog_trend <= TREND_SHARE * rate or row.backlog <= rate * P99_LIMIT)
    )
    return row


def _ms(value: float | None) -> float | None:
    """Milliseconds; None when there is no figure, or when it falls on a message never handled."""
    return None if value is None or math.isinf(value) else round(value * 1e3, 3)


def _trend(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of the backlog, messages per second (0 with fewer than 2 points)."""
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [float(p[1]) for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def search(probe: Callable[[float], Result], claim_alone: float) -> tuple[list[Result], float | None]:
    """Paced runs at 0.5x and 0.7x the claim-alone rate, then bisecting; (rows, best rate kept up)."""
    rows: list[Result] = []
    kept: float | None = None
    lost: float | None = None
    for share in (0.5, 0.7):
        rows.append(probe(share * claim_alone))
        if rows[-1].kept_up:
            kept = share * claim_alone
        else:
            lost = share * claim_alone
            break
    lo = kept if kept is not None else 0.0
    hi = lost if lost is not None else 1.2 * claim_alone
    for _ in range(SEARCH_STEPS):
        mid = (lo + hi) / 2
        rows.append(probe(mid))
        if rows[-1].kept_up:
            lo = kept = mid
        else:
            hi = mid
    return rows, kept


# -- the rows of a run ----------------------------------------------------------------------------


def _workers(case: drivers.Case, consumers: Consumers, handler: str) -> WorkerProcesses:
    return WorkerProcesses(case.dsn, case.table, [case.queue], processes=consumers.processes,
                           concurrency=consumers.concurrency, handler=f"mqlite.bench.handlers:{handler}")


def drain_rows(case: drivers.Case, messages: int, consumers: Consumers, tell: Tell, cap: float) -> list[Result]:
    """`--scenario drain`: one row, `messages` no-op messages through the worker processes."""
    drivers.create_table(case.dsn, case.table)
    try:
        with Queue(case.dsn, table=case.table, pool_size=2) as q, _workers(case, consumers, "noop") as workers:
            return [drain_once(q, workers, case, messages, consumers, False, tell, cap)]
    finally:
        drivers.drop_table(case.dsn, case.table)


def paced_rows(
    case: drivers.Case, consumers: Consumers, tell: Tell, *, seconds: float, rate: float | None, find_max: bool,
    claim_alone_messages: int, cap: float,
) -> tuple[list[Result], float | None, float | None]:
    """`--scenario mixed --rate R` (one row) or `--find-max` (the claim-alone drain, then the search).

    Returns (rows, claim-alone rate or None, best rate kept up or None).
    """
    drivers.create_table(case.dsn, case.table)
    try:
        with Queue(case.dsn, table=case.table, pool_size=34) as q, _workers(case, consumers, "record") as workers:
            def probe(r: float) -> Result:
                return paced_once(q, workers, case, r, seconds, consumers, tell)

            if not find_max:
                assert rate is not None
                row = probe(rate)
                return [row], None, (rate if row.kept_up else None)
            alone = drain_once(q, workers, case, claim_alone_messages, consumers, True, tell, cap)
            alone.strategy = "mqlite-worker-claim-alone"
            rows, best = search(probe, alone.rate)
            return [alone, *rows], alone.rate, best
    finally:
        drivers.drop_table(case.dsn, case.table)
