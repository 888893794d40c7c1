"""mqlite on a throwaway 3-node Galera cluster: 1 writer node (routing=single) vs 3 (routing=spread).

    python -m mqlite.bench.cluster_bench [--seconds 4] [--clients 64] [--json FILE]

Starts the cluster (mqlite.testing.galera.GaleraCluster), runs `mqlite bench --scenario push,pop,claim`
against the DSN listing all three nodes, once with each routing, in the same run, and prints
the rates side by side. Every run is bounded in time; the cluster is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

from ..testing.galera import GaleraCluster, galera_missing


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m mqlite.bench.cluster_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--json", help="write both runs' JSON here")
    args = parser.parse_args()
    missing = galera_missing()
    if missing:
        print(f"cluster_bench: no Galera cluster here: {missing}", file=sys.stderr)
        return 1
    runs = {}
    with GaleraCluster(nodes=3) as cluster:
        for routing in ("single", "spread"):
            dsn = f"{cluster.dsn}?routing={routing}"
            done = subprocess.run(
                [sys.executable, "-m", "mqlite", "bench", "--dsn", dsn, "--scenario", "push,pop,claim",
                 "--clients", str(args.clients), "--seconds", str(args.seconds), "--json"],
                capture_output=True, text=True, timeout=600,
            )
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return done.returncode
            runs[routing] = json.loads(done.stdout)
    rows: dict[str, Any] = {}
    for routing, run in runs.items():
        for r in run["results"]:
            rows.setdefault(r["scenario"], {})[routing] = r
    print(f"{'scenario':10} {'1 writer msg/s':>15} {'3 writers msg/s':>16} {'ratio':>7}  errors (1 / 3)")
    for scenario, by in rows.items():
        one, three = by.get("single"), by.get("spread")
        if not one or not three:
            continue
        ratio = three["rate"] / one["rate"] if one["rate"] else float("nan")
        print(f"{scenario:10} {one['rate']:15,.0f} {three['rate']:16,.0f} {ratio:7.2f}  "
              f"{one.get('errors', 0)} / {three.get('errors', 0)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
