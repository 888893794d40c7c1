"""Transactional push against the INSERT an application would write itself, in the same run.

    python -m mqlite.bench.txn_push [--dsn DSN] [--threads 64] [--seconds 5] [--rounds 3] [--json FILE]

Each thread holds its own connection (mysqlclient, autocommit off: the DB-API's implicit BEGIN)
and repeats one application transaction: INSERT an order row, enqueue, COMMIT. The two ways to
enqueue take turns, in pairs of rounds that start from freshly emptied tables:
- `push`: `Queue.push("receipts", body, connection=conn)`;
- `insert`: the hand-written `INSERT INTO mqlite_messages (queue, body) VALUES (%s, %s)`.
Each round runs `--warmup` seconds uncounted first (the first transactions on a freshly emptied
table are slower). Reported: transactions per second and client CPU per transaction of each
round, the ratio push / insert of each pair, and their geometric mean (pairs alternate which
variant goes first, so an order effect cancels out).
Without a DSN (or MQLITE_DSN), a throwaway server is started. A scratch database is created on the
server and dropped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import MySQLdb

from ..config import parse_dsn
from ..queue import Queue
from ..testing import dsn_or_throwaway

ORDERS = (
    "CREATE TABLE bench_orders (id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, "
    "ref VARCHAR(40) NOT NULL, total INT NOT NULL) ENGINE=InnoDB"
)
WRITE_ORDER = "INSERT INTO bench_orders (ref, total) VALUES (%s, %s)"
# What an application would write by hand to enqueue (docs/sql.md): the same row as push.
HAND_WRITTEN = "INSERT INTO mqlite_messages (queue, body) VALUES (%s, %s)"
QUEUE = "receipts"

Enqueue = Callable[[Any, bytes], None]


def _connect(dsn: str) -> Any:
    return MySQLdb.connect(charset="utf8mb4", **parse_dsn(dsn).connect_kwargs())


@contextlib.contextmanager
def _scratch_database(dsn: str) -> Iterator[str]:
    settings = parse_dsn(dsn)
    name = f"mqlite_bench_txn_{uuid.uuid4().hex[:8]}"
    admin = MySQLdb.connect(autocommit=True, **settings.connect_kwargs())
    admin.cursor().execute(f"CREATE DATABASE `{name}`")
    try:
        yield settings.with_database(name).url()
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


def _round(conns: list[Any], enqueue: Enqueue, seconds: float, body: bytes, warmup: float = 0.0
           ) -> tuple[int, float, float]:
    """Every thread repeats the transaction for `warmup` + `seconds`; returns what the last
    `seconds` did: (transactions, elapsed, client CPU seconds)."""
    counts = [0] * len(conns)
    errors: list[BaseException] = []
    start = threading.Barrier(len(conns) + 1)
    measured = threading.Barrier(len(conns) + 1)
    deadline = [0.0, 0.0]

    def run(i: int, conn: Any) -> None:
        cur = conn.cursor()
        ref = f"t{i}"
        start.wait()
        warm_end, end = deadline
        n = 0
        try:
            while time.monotonic() < warm_end:
                cur.execute(WRITE_ORDER, (ref, n))
                enqueue(conn, body)
                conn.commit()
            measured.wait()
            while time.monotonic() < end:
                cur.execute(WRITE_ORDER, (ref, n))
                enqueue(conn, body)
                conn.commit()
                n += 1
        except BaseException as exc:
            errors.append(exc)
            measured.abort()
        finally:
            counts[i] = n
            cur.close()

    threads = [threading.Thread(target=run, args=(i, c), daemon=True) for i, c in enumerate(conns)]
    for t in threads:
        t.start()
    deadline[:] = [time.monotonic() + warmup, time.monotonic() + warmup + seconds]
    start.wait()
    try:
        measured.wait()  # every thread is past its warm-up, so none is counted short
    except threading.BrokenBarrierError:
        pass
    began = time.monotonic()
    cpu = time.process_time()
    for t in threads:
        t.join(seconds + 60)
    elapsed = time.monotonic() - began
    cpu = time.process_time() - cpu
    if errors:
        raise errors[0]
    return sum(counts), elapsed, cpu


def run(dsn: str, *, threads: int = 64, seconds: float = 3.0, rounds: int = 10, body_size: int = 100,
        warmup: float = 0.5) -> dict[str, Any]:
    """Alternate push and hand-written INSERT rounds; returns the figures (see the module docstring)."""
    body = b"x" * body_size
    with Queue(dsn, pool_size=2) as q:
        q.apply_schema()
        admin = _connect(dsn)
        admin.autocommit(True)
        admin.cursor().execute(ORDERS)

        def push(conn: Any, data: bytes) -> None:
            q.push(QUEUE, data, connection=conn)

        def insert(conn: Any, data: bytes) -> None:
            cur = conn.cursor()
            cur.execute(HAND_WRITTEN, (QUEUE, data))
            cur.close()

        conns = [_connect(dsn) for _ in range(threads)]
        results: list[dict[str, Any]] = []
        try:
            for r in range(rounds):
                # Both rounds of a pair start from empty tables; the next pair empties them again.
                admin.cursor().execute("TRUNCATE TABLE bench_orders")
                admin.cursor().execute(f"TRUNCATE TABLE `{q.table}`")
                for name, enqueue in (("push", push), ("insert", insert)) if r % 2 == 0 else (
                        ("insert", insert), ("push", push)):
                    n, elapsed, cpu = _round(conns, enqueue, seconds, body, warmup)
                    results.append({"round": r + 1, "variant": name, "transactions": n, "seconds": elapsed,
                                    "tps": n / elapsed, "client_cpu_us": cpu / max(n, 1) * 1e6})
                    print(f"round {r + 1} {name:>6}: {n / elapsed:8.0f} transactions/s, "
                          f"client CPU {cpu / max(n, 1) * 1e6:5.0f} us each", file=sys.stderr)
        finally:
            for c in conns:
                c.close()
            admin.close()
    by_round = {(x["round"], x["variant"]): x["tps"] for x in results}
    ratios = [by_round[(r + 1, "push")] / by_round[(r + 1, "insert")] for r in range(rounds)]
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {
        "threads": threads, "seconds": seconds, "warmup": warmup, "rounds": rounds, "body_size": body_size,
        "load_average": os.getloadavg(), "ratio_quartiles": [quartiles[0], quartiles[2]],
        "results": results, "ratios": ratios, "median_ratio": statistics.median(ratios),
        "mean_ratio": statistics.geometric_mean(ratios),
        "median_cpu_us": {v: statistics.median(x["client_cpu_us"] for x in results if x["variant"] == v)
                          for v in ("push", "insert")},
        "median_tps": {v: statistics.median(x["tps"] for x in results if x["variant"] == v)
                       for v in ("push", "insert")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mqlite.bench.txn_push", description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", help="server to use (default: $MQLITE_DSN, else a throwaway server)")
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each round (counted)")
    parser.add_argument("--warmup", type=float, default=0.5, help="uncounted seconds at the start of each round")
    parser.add_argument("--rounds", type=int, default=10, help="pairs of rounds (push, insert), alternating order")
    parser.add_argument("--body-size", type=int, default=100)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    with dsn_or_throwaway(args.dsn) as server, _scratch_database(server) as dsn:
        report = run(dsn, threads=args.threads, seconds=args.seconds, rounds=args.rounds, body_size=args.body_size,
                     warmup=args.warmup)
    tps, cpu = report["median_tps"], report["median_cpu_us"]
    print(f"{args.threads} threads, BEGIN; INSERT order; enqueue; COMMIT "
          f"({args.rounds} pairs of rounds, {args.seconds:g} s each)")
    for label, v in (("push(connection=conn)", "push"), ("hand-written INSERT", "insert")):
        print(f"  {label:<22} {tps[v]:8.0f} transactions/s, {cpu[v]:4.0f} us client CPU each (median)")
    ratios = ", ".join(f"{r:.2f}" for r in report["ratios"])
    low, high = report["ratio_quartiles"]
    print(f"  push / INSERT          {report['mean_ratio']:.2f} (geometric mean of the pairs; median "
          f"{report['median_ratio']:.2f}, quartiles {low:.2f}-{high:.2f})")
    print(f"  per pair: {ratios}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
