"""What priorities cost the pop: plain pops against an older tree, and pops over 10 priorities.

    python -m mqlite.bench.priority_cost --tree before=/path/to/old/checkout [--runs 5] [--dsn mysql://…]

Each run is a fresh process on a scratch database (MQLITE_DSN or --dsn, else a throwaway server):
it applies its own tree's schema, pushes `--messages` ready messages (at priority 0, or "levels":
spread over 10 priorities, interleaved so the claim order differs from the id order), then pops
them all with `--threads` threads calling `Queue.pop`, and reports messages per second. The
variants run in turn, each round in another order (before/plain, this/plain, this/levels …), so
drift on a shared machine hits them alike. Prints the median rate and client CPU per message of
each variant, and the two ratios as medians of the per-round ratios.
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--dsn")
    parser.add_argument("--tree", default="", metavar="before=DIR", help="the older tree to compare plain pops with")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
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
