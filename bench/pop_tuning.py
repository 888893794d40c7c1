#!/usr/bin/env python3
"""Evidence for the pop path: mqlite's `Claimer` with other limits, and a prefetching SQL ceiling.

    .venv/bin/python bench/pop_tuning.py --dsn mysql://root@127.0.0.1:3306/test [--clients 8,64] [--seconds 3]

An experiment, not a feature, written against the pop path of 3ace6d4 (it patches private parts
of `Queue` and stops with a clear message when they changed): it builds `mqlite.claim.Claimer` with other `max_in_flight` /
`max_batch` values (the library's defaults are 2 / 64) and records, per variant, the rate, the
latency of one pop (p50, p99, max: a max near the run's length means a thread starved), how
many rows each claim statement took, and how long a claim round trip lasted. The `ceiling`
variants claim B rows per UPDATE whatever the demand, delete them at once and hand them out
from a buffer: the rate the SQL allows, NOT crash-safe (a dead process loses its buffer), to
show what a bounded prefetch buffer could reach. Every variant gets a fresh table with the same
backlog, dropped afterwards.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import threading
import time
import uuid
from collections import deque

from rich.console import Console
from rich.table import Table

from mqlite.bench import drivers, harness
from mqlite.bench.harness import Bound, Empty, Group
from mqlite.message import Message
from mqlite.server import dsn_or_throwaway
from mqlite.sql import READ_COMMITTED, statements

claim_mod = importlib.import_module("mqlite.claim")  # the module (mqlite.claim is also a function)


class Recorder:
    """Times every claim statement round trip and counts the rows each took."""

    def __init__(self) -> None:
        self.fetch: list[float] = []
        self.rows: list[int] = []
        self.lock = threading.Lock()

    def add(self, seconds: float, rows: int) -> None:
        with self.lock:
            self.fetch.append(seconds)
            self.rows.append(rows)


class TunedDriver(drivers.MqliteDriver):
    """mqlite's pop through a Claimer built with other limits."""

    def __init__(self, case: drivers.Case, in_flight: int, batch: int, rec: Recorder) -> None:
        super().__init__(case)
        q = self.q
        claimer = claim_mod.Claimer(q._pool.open_session, q._pool.translating, q._sql, case.queue,
                                    consume=True, max_batch=batch, max_in_flight=in_flight)
        fetch = claimer._fetch

        def timed(session, want):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            got = fetch(session, want)
            rec.add(time.perf_counter() - t0, len(got))
            return got

        claimer._fetch = timed  # type: ignore[method-assign]
        q._claimers[(case.queue, True)] = claimer


class CeilingDriver:
    """Claim `batch` rows per UPDATE (at most `in_flight` at once), delete them, hand out from a buffer."""

    def __init__(self, case: drivers.Case, in_flight: int, batch: int, rec: Recorder) -> None:
        self.case, self.batch, self.rec = case, batch, rec
        self.st = statements(case.table)
        self.buffer: deque[Message] = deque()
        self.lock = threading.Lock()
        self.slots = threading.Semaphore(in_flight)
        self.sessions: list = []
        self.empty = False

    def prepare(self, clients: int) -> None:
        pass

    def _session(self):  # type: ignore[no-untyped-def]
        with self.lock:
            if self.sessions:
                return self.sessions.pop()
        conn = drivers.connect(self.case.dsn)
        conn.cursor().execute(READ_COMMITTED)
        return conn

    def worker(self, role: str, index: int):  # type: ignore[no-untyped-def]
        st, queue = self.st, self.case.queue

        def pop() -> int:
            while True:
                with self.lock:
                    if self.buffer:
                        self.buffer.popleft()
                        return 1
                    if self.empty:
                        raise Empty
                with self.slots:
                    with self.lock:
                        if self.buffer:
                            continue
                    conn = self._session()
                    t0 = time.perf_counter()
                    cur = conn.cursor()
                    rows = []
                    if cur.execute(st.claim, (queue, self.batch)):
                        cur.execute(st.read_claimed, (queue,))
                        rows = [Message.from_row(r) for r in cur.fetchall()]
                        for stamp in {m.claimed_at for m in rows}:
                            ids = [m.id for m in rows if m.claimed_at == stamp]
                            cur.execute(st.in_list(st.delete_claimed, len(ids)), (queue, *ids, stamp))
                    cur.close()
                    self.rec.add(time.perf_counter() - t0, len(rows))
                    with self.lock:
                        self.sessions.append(conn)
                        if not rows:
                            self.empty = True
                            raise Empty
                        self.buffer.extend(rows[1:])
                    return 1

        return pop

    def samples(self) -> dict[str, list[float]]:
        return {}

    def close(self) -> None:
        for conn in self.sessions:
            conn.close()


def measure(dsn: str, kind: str, in_flight: int, batch: int, clients: int, seconds: float, backlog: int) -> dict:
    rec = Recorder()
    tag = uuid.uuid4().hex[:6]
    case = drivers.Case(dsn=dsn, table=f"mqb_{tag}_tune", queue=f"mqb-{tag}-tune", pool_size=clients + 4)
    drivers.create_table(dsn, case.table)
    try:
        drivers.seed(dsn, case.table, case.queue, backlog, 100)
        make = TunedDriver if kind == "claimer" else CeilingDriver
        [s] = harness.run(lambda: make(case, in_flight, batch, rec), [Group("pop", clients)], Bound(seconds=seconds))
    finally:
        drivers.drop_table(dsn, case.table)
    if s.error and not s.messages:
        raise SystemExit(f"{kind} in_flight={in_flight} batch={batch} failed: {s.error}")
    if kind == "claimer" and s.messages and not rec.fetch:
        raise SystemExit("Queue.pop no longer goes through the Claimer this experiment patches (the pop path "
                         "changed since it was written, at 3ace6d4): update bench/pop_tuning.py")
    fetch = sorted(rec.fetch)
    ms = lambda v: None if v is None else round(v * 1e3, 2)  # noqa: E731
    return {
        "variant": f"{kind} in_flight={in_flight} batch={batch}", "clients": clients, "rate": round(s.rate),
        "messages": s.messages, "drained": s.drained, "error": s.error,
        "p50_ms": ms(harness.percentile(s.latencies, 0.5)), "p99_ms": ms(harness.percentile(s.latencies, 0.99)),
        "max_ms": ms(s.latencies[-1] if s.latencies else None),
        "claims": len(fetch), "rows_per_claim": round(statistics.mean(rec.rows), 1) if rec.rows else None,
        "claim_p50_ms": ms(harness.percentile(fetch, 0.5)), "claim_p99_ms": ms(harness.percentile(fetch, 0.99)),
    }


VARIANTS = [
    ("claimer", 2, 64),  # the library's defaults
    ("claimer", 1, 64),
    ("claimer", 4, 64),
    ("claimer", 4, 16),
    ("ceiling", 4, 16),
    ("ceiling", 4, 64),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn")
    ap.add_argument("--clients", default="8,64")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--backlog", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=1, help="run the whole list this many times (noise)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    with dsn_or_throwaway(args.dsn) as dsn:
        for _ in range(args.repeat):
            for clients in (int(c) for c in args.clients.split(",")):
                for kind, in_flight, batch in VARIANTS:
                    row = measure(dsn, kind, in_flight, batch, clients, args.seconds, args.backlog)
                    print(json.dumps(row), file=sys.stderr)
                    rows.append(row)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    t = Table("variant", "clients", "msg/s", "p50 / p99 / max ms", "claims", "rows/claim", "claim p50 / p99 ms")
    for r in rows:
        t.add_row(r["variant"], str(r["clients"]), f"{r['rate']:,}" + (" (drained)" if r["drained"] else ""),
                  f"{r['p50_ms']} / {r['p99_ms']} / {r['max_ms']}", str(r["claims"]), str(r["rows_per_claim"]),
                  f"{r['claim_p50_ms']} / {r['claim_p99_ms']}")
    Console(width=140).print(t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
