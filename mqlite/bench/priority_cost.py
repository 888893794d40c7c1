"""What priorities cost the pop: plain pops against an older tree, and pops over 10 priorities.

    python -m mqlite.bench.priority_cost --tree before=/path/to/old/checkout [--runs 5] [--dsn mysql://…]
    python -m mqlite.bench.priority_cost --idle [--delayed 20000] [--dsn mysql://…]

Each run is a fresh process on a scratch database (MQLITE_DSN or --dsn, else a throwaway server):
it applies its own tree's schema, pushes `--messages` ready messages (at priority 0, or "levels":
spread over 10 priorities, interleaved so the claim order differs from the id order), then pops
them all with `--threads` threads calling `Queue.pop`, and reports messages per second. The
variants run in turn, each round in another order (before/plain, this/plain, this/levels …), so
drift on a shared machine hits them alike. Prints the median rate and client CPU per message of
each variant, and the two ratios as medians of the per-round ratios.

`--idle`: what an empty poll costs on a queue holding only `--delayed` delayed and a tenth as many
failed rows: the claim that names the queue's priorities (mqlite's) against the claim bounded by
the queue alone (the fallback beyond 64 priorities), 300 polls each, in turn; microseconds per poll.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from ..testing import dsn_or_throwaway, scratch_database

_CHILD = """
import json, sys, threading, time
import mqlite
dsn, messages, threads, levels = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
q = mqlite.Queue(dsn, pool_size=threads + 4)
q.apply_schema()
chunk = 500
for start in range(0, messages, chunk):
    n = min(chunk, messages - start)
    if levels:
        q.push_many("cost", [b"x" * 100] * n, priority=(start // chunk) % levels - levels // 2)
    else:
        q.push_many("cost", [b"x" * 100] * n)
got = [0] * threads
def work(i):
    while q.pop("cost") is not None:
        got[i] += 1
workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
wall, cpu = time.perf_counter(), time.process_time()
for w in workers:
    w.start()
for w in workers:
    w.join()
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
assert sum(got) == messages, sum(got)
q.close()
print(json.dumps([messages / wall, cpu / messages * 1e6]))
"""


def _run(tree: str, dsn: str, messages: int, threads: int, levels: int) -> list[float]:
    env = dict(os.environ)
    if tree:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (tree, os.environ.get("PYTHONPATH")) if p)
    with scratch_database(dsn) as db:
        done = subprocess.run([sys.executable, "-c", _CHILD, db, str(messages), str(threads), str(levels)],
                              env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True, timeout=600,
                              check=True)
    return [float(v) for v in json.loads(done.stdout)]


def idle_cost(dsn: str, delayed: int, polls: int = 300) -> dict[str, float]:
    """Microseconds per empty claim, by statement, on a queue of delayed and failed rows only."""
    import time

    from ..queue import Queue

    with scratch_database(dsn) as db, Queue(db) as q:
        q.apply_schema()
        for start in range(0, delayed, 1000):
            n = min(1000, delayed - start)
            ids = q.push_many("idle", [b"x"] * n, priority=start // 1000 % 3)
            q._execute(q._sql.in_list("UPDATE mqlite_messages SET available_at = NOW(6) + INTERVAL 1 DAY "
                                      "WHERE id IN ({ids})", len(ids)), tuple(ids))
        for _ in range(delayed // 10 // 100):
            q.push_many("idle", [b"f"] * 100)
        q._execute("UPDATE mqlite_messages SET available_at = NULL, failed_at = NOW(6) WHERE body = 'f'", ())
        st, levels = q._sql, (0, 1, 2)
        named = (st.in_list(st.claim_levels, len(levels)), (30_000_000, "idle", *levels, q.table, "idle", 16))
        walk = (st.claim, (30_000_000, "idle", q.table, "idle", 16))
        spent = {"named priorities": 0.0, "queue range": 0.0}
        with q._pool.connection() as conn:
            cur = conn.cursor()
            for _ in range(polls):
                for label, (statement, params) in (("named priorities", named), ("queue range", walk)):
                    began = time.perf_counter()
                    assert cur.execute(statement, params) == 0
                    spent[label] += time.perf_counter() - began
            cur.close()
    return {label: total / polls * 1e6 for label, total in spent.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--dsn")
    parser.add_argument("--tree", default="", metavar="before=DIR", help="the older tree to compare plain pops with")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--idle", action="store_true", help="the empty-poll figure instead (see above)")
    parser.add_argument("--delayed", type=int, default=20000)
    args = parser.parse_args(argv)
    if args.idle:
        with dsn_or_throwaway(args.dsn) as dsn:
            cost = idle_cost(dsn, args.delayed)
        lines = [f"{k:17} {v:8.0f} us per empty poll" for k, v in cost.items()]
        print(json.dumps(cost) if args.json else "\n".join(lines))
        return
    before = args.tree.partition("=")[2]
    variants = {"this/levels": ("", 10), "this/plain": ("", 0)}
    if before:
        variants["before/plain"] = (before, 0)
    results: dict[str, list[list[float]]] = {label: [] for label in variants}
    order = list(variants)
    with dsn_or_throwaway(args.dsn) as dsn:
        for r in range(args.runs):
            for label in order[r % len(order):] + order[:r % len(order)]:
                tree, levels = variants[label]
                results[label].append(_run(tree, dsn, args.messages, args.threads, levels))
    medians = {label: statistics.median(r[0] for r in runs) for label, runs in results.items()}
    cpu = {label: statistics.median(r[1] for r in runs) for label, runs in results.items()}

    def paired(a: str, b: str) -> float:
        # The median of the ratios within each round: the variants of a round ran back to back.
        return statistics.median(x[0] / y[0] for x, y in zip(results[a], results[b], strict=True))

    ratios = {"levels / plain": paired("this/levels", "this/plain")}
    if before:
        ratios["plain / before"] = paired("this/plain", "before/plain")
    if args.json:
        print(json.dumps({"runs": results, "medians": medians, "cpu_us": cpu, "ratios": ratios}))
        return
    for label, runs in results.items():
        print(f"{label:14} median {medians[label]:6.0f} msg/s, client CPU {cpu[label]:5.0f} us/msg;  runs "
              f"{' '.join(f'{r[0]:.0f}' for r in runs)}")
    for name, value in ratios.items():
        print(f"{name:14} {value:.2f} (median of the per-round ratios)")


if __name__ == "__main__":
    main()
