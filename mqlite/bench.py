"""Push/pop throughput and latency under concurrent clients, on a real server.

Each scenario runs `clients` threads over one `Queue` (a pooled connection per thread), on a table
of its own that is dropped afterwards. Functions return plain data; printing is the CLI's job.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from . import schema
from .queue import Queue

BENCH_TABLE = "mqlite_bench"
Progress = Callable[[str, int, int], None]  # (scenario, done, total)


@dataclass(frozen=True)
class Result:
    """One scenario at one client count."""

    scenario: str
    clients: int
    messages: int
    seconds: float
    rate: float  # messages per second
    p50_ms: float
    p99_ms: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def _run_threads(
    scenario: str, clients: int, total: int, op: Callable[[], bool], progress: Progress | None
) -> Result:
    """Run `op` from `clients` threads until `total` ops succeeded or `op` reports the queue empty."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    remaining = [total]
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def worker(mine: list[float]) -> None:
        start.wait()
        clock = time.perf_counter
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            t0 = clock()
            ok = op()
            mine.append(clock() - t0)
            if not ok:
                return

    threads = [threading.Thread(target=worker, args=(latencies[i],), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    while alive := [t for t in threads if t.is_alive()]:
        alive[0].join(timeout=0.2)
        if progress:
            progress(scenario, total - max(remaining[0], 0), total)
    elapsed = time.perf_counter() - began
    merged = sorted(x for per in latencies for x in per)
    done = len(merged)
    return Result(
        scenario, clients, done, round(elapsed, 3), round(done / elapsed if elapsed else 0.0, 1),
        round(_percentile(merged, 0.50) * 1e3, 3), round(_percentile(merged, 0.99) * 1e3, 3),
    )


def run(
    dsn: str,
    *,
    clients: int = 64,
    messages: int = 20_000,
    body_size: int = 100,
    progress: Progress | None = None,
) -> list[Result]:
    """Push `messages` bodies of `body_size` bytes from `clients` threads, then pop them all."""
    body = os.urandom(body_size)
    q = Queue(dsn, table=BENCH_TABLE, pool_size=clients + 2, checkout_timeout=60)
    try:
        q.apply_schema()
        q.purge("bench")
        push = _run_threads("push", clients, messages, lambda: bool(q.push("bench", body)), progress)
        pop = _run_threads("pop", clients, messages, lambda: q.pop("bench") is not None, progress)
        return [push, pop]
    finally:
        _drop(q)
        q.close()


def _drop(q: Queue) -> None:
    with q._pool.connection() as conn:
        schema.drop(conn, q.table)
