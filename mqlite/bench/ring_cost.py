"""What ringing costs a push: `python -m mqlite.bench.ring_cost [--threads 64] [--pairs 10] [--seconds 1]`.

Pushes to a queue nobody waits on, alternating in one process a Queue that rings (the default)
and one with `wake=False` (whose push skips the doorbell at its first line, as before it
existed), `seconds` each, `pairs` times; prints msg/s of each and the median of the per-pair
ratios. Alternating in short slices keeps a loaded machine's drift out of the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid

from ..queue import Queue
from . import drivers


def _rate(q: Queue, threads: int, seconds: float) -> float:
    counts = [0] * threads
    stop = time.monotonic() + seconds

    def run(k: int) -> None:
        while time.monotonic() < stop:
            q.push("ring-cost", b"x" * 100)
            counts[k] += 1

    workers = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    started = time.monotonic()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return sum(counts) / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=None)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    table = f"mqb_ring_{uuid.uuid4().hex[:10]}"
    ringing = Queue(args.dsn, table=table, pool_size=args.threads)
    silent = Queue(args.dsn, table=table, pool_size=args.threads, wake=False)
    ringing.apply_schema()
    try:
        for q in (ringing, silent):
            _rate(q, args.threads, 0.3)  # warm: connections open
        pairs = []
        for n in range(args.pairs):
            order = (ringing, silent) if n % 2 == 0 else (silent, ringing)
            rates = {id(q): _rate(q, args.threads, args.seconds) for q in order}
            pairs.append((rates[id(ringing)], rates[id(silent)]))
        print(json.dumps({
            "threads": args.threads, "seconds": args.seconds,
            "ringing": [round(a) for a, _ in pairs], "silent": [round(b) for _, b in pairs],
            "median_ratio": round(statistics.median(a / b for a, b in pairs), 3),
        }))
    finally:
        ringing.close()
        silent.close()
        drivers.drop_table(ringing.settings.url(), table)


if __name__ == "__main__":
    main()
