"""Does the backlog matter? mqlite's pop rate with a small and a huge number of ready rows.

    python -m mqlite.bench.backlog --dsn mysql://root@127.0.0.1:3306/test [--backlog 1000000]
    python -m mqlite.bench.backlog                  # MQLITE_DSN, else a throwaway server
    python -m mqlite.bench.backlog --delayed 1000000   # 10,000 ready beside a million delayed rows

For each backlog size a fresh table is filled with that many ready messages; then, `rounds`
times, `clients` threads pop `take` messages (count-bound, timed) and the table is topped back
up to its size (untimed), so every round starts from the same backlog. The rate of a size is
all its messages over all its timed seconds. The goal: the rate at 1,000,000 ready rows at least
`GOAL` times the rate at 10,000 (and, with --delayed, a million delayed rows slow it by less than
that), with the client's memory flat. Every timed round stops at --cap seconds; seeding 1,000,000
rows takes ~15 s here. Tables are created for the run and dropped after it.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..testing import dsn_or_throwaway
from . import drivers, harness
from .drivers import Case, MqliteDriver
from .harness import Bound, Group
from .reference_sql import seed_delayed

GOAL = 0.8


@dataclass
class Point:
    backlog: int
    delayed: int  # rows of the same queue due in a day: not poppable, but in the table
    clients: int
    messages: int
    seconds: float
    rate: float
    p50_ms: float | None
    p99_ms: float | None
    seed_seconds: float  # time to fill the table (not part of the rate)
    client_rss_mb: float | None  # resident memory of this process after the size's rounds

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rss_mb() -> float | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


Tick = Callable[[str, float, int], None]


def _seeding(progress: Tick | None, label: str, total: int) -> Callable[[int], None]:
    def tick(done: int) -> None:
        if progress is not None:
            progress(f"seeding {label}", done / max(1, total), done)

    return tick


def _popping(progress: Tick | None, label: str) -> Callable[[float, int], None]:
    def tick(fraction: float, done: int) -> None:
        if progress is not None:
            progress(label, fraction, done)

    return tick


def probe(
    dsn: str,
    *,
    sizes: Sequence[int | tuple[int, int]] = (10_000, 1_000_000),
    clients: int = 64,
    take: int = 5_000,
    rounds: int = 4,
    body_size: int = 100,
    cap: float = 60.0,
    progress: Callable[[str, float, int], None] | None = None,
) -> list[Point]:
    """Pop `take` messages `rounds` times at each backlog size; one Point per size.

    A size may be `(ready, delayed)`: `delayed` more rows of the queue, due in a day, sit in the
    table while the ready ones are popped (the claim must not walk them).
    """
    run_id = uuid.uuid4().hex[:6]
    points = []
    for n, point in enumerate(sizes):
        size, delayed = point if isinstance(point, tuple) else (point, 0)
        if take > size:
            raise ValueError(f"take ({take}) must not exceed the backlog ({size})")
        case = Case(dsn=dsn, table=f"mqb_{run_id}_b{n}", queue=f"mqb-{run_id}-b{n}", body_size=body_size,
                    pool_size=clients + 4)
        label = f"backlog {size:,}" + (f" + {delayed:,} delayed" if delayed else "")
        drivers.create_table(dsn, case.table)
        try:
            began = time.monotonic()
            drivers.seed(dsn, case.table, case.queue, size, body_size, tick=_seeding(progress, label, size))
            if delayed:
                drivers.insert_rows(dsn, seed_delayed(case.table), (case.queue, drivers.body(body_size)), delayed,
                                    tick=_seeding(progress, f"{label}: delayed", delayed))
            seeded = time.monotonic() - began
            messages, seconds, latencies = 0, 0.0, []
            for r in range(rounds):
                if r:
                    drivers.seed(dsn, case.table, case.queue, size - drivers.ready(dsn, case.table, case.queue),
                                 body_size)
                [stats] = harness.run(
                    functools.partial(MqliteDriver, case), [Group("pop", clients)], Bound(messages=take, cap=cap),
                    tick=_popping(progress, f"pop from {label} (round {r + 1}/{rounds})"),
                )
                if stats.error:
                    raise RuntimeError(f"pop failed at backlog {size}: {stats.error}")
                messages += stats.messages
                seconds += stats.elapsed
                latencies.extend(stats.latencies)
            latencies.sort()
            p50, p99 = harness.percentile(latencies, 0.5), harness.percentile(latencies, 0.99)
            points.append(Point(
                size, delayed, clients, messages, round(seconds, 3), round(messages / seconds if seconds else 0.0, 1),
                None if p50 is None else round(p50 * 1e3, 3), None if p99 is None else round(p99 * 1e3, 3),
                round(seeded, 1), _rss_mb(),
            ))
        finally:
            drivers.drop_table(dsn, case.table)
    return points


def ratio(points: Sequence[Point]) -> float | None:
    """Rate at the largest backlog over the rate at the smallest."""
    if len(points) < 2 or not points[0].rate:
        return None
    small, big = points[0], points[-1]
    return round(big.rate / small.rate, 3)


def main() -> int:
    ap = argparse.ArgumentParser(
        prog="python -m mqlite.bench.backlog", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dsn", help="mysql://user:pass@host:port/db (else MQLITE_DSN, else a throwaway server)")
    ap.add_argument("--backlog", type=int, default=1_000_000, help="the big backlog [1000000]")
    ap.add_argument("--small", type=int, default=10_000, help="the small backlog [10000]")
    ap.add_argument("--delayed", type=int, default=0,
                    help="instead of a big ready backlog: the small one plus this many delayed rows")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--take", type=int, default=5_000, help="messages popped per timed round [5000]")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--body-size", type=int, default=100)
    ap.add_argument("--cap", type=float, default=60.0, help="seconds at most per timed round [60]")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    err, out = Console(stderr=True), Console()
    with dsn_or_throwaway(args.dsn) as dsn:
        with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err,
                      transient=True) as bar:
            tasks: dict[str, Any] = {}

            def progress(label: str, fraction: float, done: int) -> None:
                if label not in tasks:
                    tasks[label] = bar.add_task(label, total=1.0)
                bar.update(tasks[label], completed=fraction)

            points = probe(
                dsn, sizes=(args.small, (args.small, args.delayed) if args.delayed else args.backlog),
                clients=args.clients, take=args.take, rounds=args.rounds,
                body_size=args.body_size, cap=args.cap, progress=progress,
            )
    rate_ratio = ratio(points)
    if args.json:
        json.dump({"points": [p.as_dict() for p in points], "ratio": rate_ratio, "goal": GOAL}, sys.stdout, indent=2)
        print()
        return 0
    t = Table("ready rows", "delayed rows", "clients", "popped", "seconds", "msg/s", "p50 / p99 ms", "seeding s",
              "client RSS MB")
    for p in points:
        t.add_row(f"{p.backlog:,}", f"{p.delayed:,}", str(p.clients), f"{p.messages:,}", f"{p.seconds:.2f}",
                  f"{p.rate:,.0f}", f"{p.p50_ms} / {p.p99_ms}", f"{p.seed_seconds:g}", f"{p.client_rss_mb}")
    out.print(t)
    verdict = "n/a" if rate_ratio is None else ("[green]met[/]" if rate_ratio >= GOAL else "[red]short[/]")
    big = f"{args.small:,} + {args.delayed:,} delayed" if args.delayed else f"{args.backlog:,}"
    out.print(f"rate at {big} ÷ rate at {args.small:,} = {rate_ratio} (goal ≥ {GOAL}): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
