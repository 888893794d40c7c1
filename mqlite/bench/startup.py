"""Start-up cost: `import mqlite`, `import mqlite.cli` and a cold `mqlite push`, each a fresh process.

    python -m mqlite.bench.startup [--runs 20] [--dsn mysql://…]
    python -m mqlite.bench.startup --tree before=/path/to/old/checkout --tree after=   # in turn

For each run: `python -X importtime -c 'import mqlite'` (the top module's cumulative time, as the
interpreter counts it), the same for `mqlite.cli`, and the wall time of `python -m mqlite push`
from start to exit, pushing one message to a scratch database (MQLITE_DSN or --dsn, else a
throwaway server). A `--tree LABEL=DIR` runs with DIR (or several, `:`-joined) first on
PYTHONPATH (empty: this environment's mqlite); several trees run in turn, A B A B …, so drift on
a shared machine hits them alike. Bytecode is written and used as an installed package's would be (one warm-up run).
Prints min and median per figure; --json for the raw runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from ..queue import Queue
from ..testing import dsn_or_throwaway, scratch_database

FIGURES = ("import mqlite", "import mqlite.cli", "mqlite push")
# The children run elsewhere: `-c` and `-m` put the working directory first on sys.path, and run
# from a checkout that would import its mqlite whatever PYTHONPATH says.
_CWD = tempfile.gettempdir()


def _env(tree: str, dsn: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["MQLITE_DSN"] = dsn
    if tree:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (tree, os.environ.get("PYTHONPATH")) if p)
    return env


def _import_ms(module: str, env: dict[str, str]) -> float:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], env=env, cwd=_CWD,
                          capture_output=True, text=True, timeout=60, check=True)
    # "import time: self [us] | cumulative | name": the last line naming the module is its own import.
    last = [line for line in done.stderr.splitlines() if line.rstrip().endswith(f"| {module}")][-1]
    return int(last.split("|")[1]) / 1000


def _push_ms(env: dict[str, str]) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mqlite", "push", "startup", "x"], env=env, cwd=_CWD,
                   capture_output=True, timeout=60, check=True)
    return (time.perf_counter() - began) * 1000


def measure(dsn: str, trees: dict[str, str], runs: int) -> dict[str, dict[str, list[float]]]:
    """{tree: {figure: [ms per run]}}, the trees alternating run by run."""
    results: dict[str, dict[str, list[float]]] = {label: {f: [] for f in FIGURES} for label in trees}
    for tree in trees.values():
        _push_ms(_env(tree, dsn))  # warm-up: bytecode written, pages cached
    for _ in range(runs):
        for label, tree in trees.items():
            env = _env(tree, dsn)
            results[label]["import mqlite"].append(_import_ms("mqlite", env))
            results[label]["import mqlite.cli"].append(_import_ms("mqlite.cli", env))
            results[label]["mqlite push"].append(_push_ms(env))
    return results


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m mqlite.bench.startup", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20, help="runs of each figure per tree [20]")
    ap.add_argument("--dsn", help="server for the push (else MQLITE_DSN, else a throwaway server)")
    ap.add_argument("--tree", action="append", default=[], metavar="LABEL=DIR",
                    help="a checkout to put first on PYTHONPATH (repeat to alternate; DIR may be empty)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    trees = dict(t.split("=", 1) for t in args.tree) if args.tree else {"this": ""}
    with dsn_or_throwaway(args.dsn) as server, scratch_database(server, "mqlite_bench_startup") as dsn:
        with Queue(dsn) as q:
            q.apply_schema()
        results = measure(dsn, trees, args.runs)
    if args.json:
        print(json.dumps({"runs": args.runs, "load": os.getloadavg()[0], "results": results}, indent=2))
        return 0
    print(f"{args.runs} runs per figure and tree, alternating; load average {os.getloadavg()[0]:.1f}")
    for label, figures in results.items():
        for figure, values in figures.items():
            print(f"{label:18} {figure:18} min {min(values):6.1f} ms   median {statistics.median(values):6.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
