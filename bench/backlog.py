#!/usr/bin/env python3
"""Pop rate with a small and a huge backlog (the goal: 1,000,000 ready rows ≥ 0.8× the rate at 10,000;
with --delayed 1000000, a million delayed rows beside the 10,000 ready ones slow the pop by < 20%).

    .venv/bin/python bench/backlog.py --dsn mysql://root@127.0.0.1:3306/test [--backlog 1000000]
    .venv/bin/python bench/backlog.py            # starts a throwaway server

Bounded: every timed round stops at --cap seconds; seeding 1,000,000 rows takes ~15 s here.
Tables are created for the run and dropped after it.
"""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mqlite.bench import backlog
from mqlite.server import dsn_or_throwaway


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
            tasks: dict[str, object] = {}

            def progress(label: str, fraction: float, done: int) -> None:
                if label not in tasks:
                    tasks[label] = bar.add_task(label, total=1.0)
                bar.update(tasks[label], completed=fraction)

            points = backlog.probe(
                dsn, sizes=(args.small, (args.small, args.delayed) if args.delayed else args.backlog),
                clients=args.clients, take=args.take, rounds=args.rounds,
                body_size=args.body_size, cap=args.cap, progress=progress,
            )
    ratio = backlog.ratio(points)
    if args.json:
        json.dump({"points": [p.as_dict() for p in points], "ratio": ratio, "goal": backlog.GOAL}, sys.stdout, indent=2)
        print()
        return 0
    t = Table("ready rows", "delayed rows", "clients", "popped", "seconds", "msg/s", "p50 / p99 ms", "seeding s", "client RSS MB")
    for p in points:
        t.add_row(f"{p.backlog:,}", f"{p.delayed:,}", str(p.clients), f"{p.messages:,}", f"{p.seconds:.2f}", f"{p.rate:,.0f}",
                  f"{p.p50_ms} / {p.p99_ms}", f"{p.seed_seconds:g}", f"{p.client_rss_mb}")
    out.print(t)
    verdict = "n/a" if ratio is None else ("[green]met[/]" if ratio >= backlog.GOAL else "[red]short[/]")
    big = f"{args.small:,} + {args.delayed:,} delayed" if args.delayed else f"{args.backlog:,}"
    out.print(f"rate at {big} ÷ rate at {args.small:,} = {ratio} (goal ≥ {backlog.GOAL}): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
