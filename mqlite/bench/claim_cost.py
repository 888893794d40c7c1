"""The claim protocol's own cost: opening a claim session, and one single-row fetch on it.

    python -m mqlite.bench.claim_cost [--runs 5] [--fetches 3000] [--dsn mysql://…]
    python -m mqlite.bench.claim_cost --tree before=/path/to/old/checkout --tree after=   # in turn

Each run is a fresh process on a scratch database (MQLITE_DSN or --dsn, else a throwaway server):
it opens and closes 200 claim sessions (`Pool.open_session` + `protocol.Session`), then pops
`--fetches` messages one `protocol.fetch` at a time on one session, and reports wall and client
CPU time per session open and per fetch. A `--tree LABEL=DIR` runs with DIR first on PYTHONPATH
(empty: this environment's mqlite); several trees run in turn, A B A B …, so drift on a shared
machine hits them alike. Prints the median per figure; --json for the raw runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from ..queue import Queue
from ..testing import dsn_or_throwaway, scratch_database

FIGURES = ("open wall us", "open cpu us", "fetch wall us", "fetch cpu us")
_CHILD = """
import json, sys, time
import mqlite
from mqlite import protocol
from mqlite.sql import statements
dsn, fetches = sys.argv[1], int(sys.argv[2])
q = mqlite.Queue(dsn)
st = statements(q.table)
wall, cpu = time.perf_counter(), time.process_time()
for _ in range(200):
    raw = q._pool.open_session()
    protocol.Session(raw)
    raw.close()
opened = ((time.perf_counter() - wall) / 200 * 1e6, (time.process_time() - cpu) / 200 * 1e6)
raw = q._pool.open_session()
session = protocol.Session(raw)
wall, cpu = time.perf_counter(), time.process_time()
got = sum(len(protocol.fetch(session, st, "cost", 1, 30_000_000, True)) for _ in range(fetches))
fetched = ((time.perf_counter() - wall) / fetches * 1e6, (time.process_time() - cpu) / fetches * 1e6)
assert got == fetches, got
raw.close()
q.close()
print(json.dumps([*opened, *fetched]))
"""


def _run(tree: str, dsn: str, fetches: int) -> list[float]:
    env = dict(os.environ)
    if tree:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (tree, os.environ.get("PYTHONPATH")) if p)
    with scratch_database(dsn) as db:
        with Queue(db) as q:
            q.apply_schema()
            q.push_many("cost", [b"x"] * fetches)
        done = subprocess.run([sys.executable, "-c", _CHILD, db, str(fetches)], env=env, cwd=tempfile.gettempdir(),
                              capture_output=True, text=True, timeout=600, check=True)
    return [float(v) for v in json.loads(done.stdout)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--fetches", type=int, default=3000)
    parser.add_argument("--dsn")
    parser.add_argument("--tree", action="append", default=[], metavar="LABEL=DIR")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    trees = dict(t.partition("=")[::2] for t in args.tree) or {"this": ""}
    results: dict[str, list[list[float]]] = {label: [] for label in trees}
    with dsn_or_throwaway(args.dsn) as dsn:
        for _ in range(args.runs):
            for label, tree in trees.items():
                results[label].append(_run(tree, dsn, args.fetches))
    if args.json:
        print(json.dumps({label: [dict(zip(FIGURES, r, strict=True)) for r in runs]
                          for label, runs in results.items()}))
        return
    print(f"{'tree':<10}" + "".join(f"{f:>16}" for f in FIGURES) + f"   (median of {args.runs} runs)")
    for label, runs in results.items():
        medians = [statistics.median(r[i] for r in runs) for i in range(len(FIGURES))]
        print(f"{label:<10}" + "".join(f"{m:>16.1f}" for m in medians))


if __name__ == "__main__":
    main()
