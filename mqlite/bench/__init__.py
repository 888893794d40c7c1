"""`mqlite bench` as a library: run scenarios against a real server and return the figures.

    from mqlite import bench
    report = bench.run(dsn, bench.Options(clients=64, seconds=4, compare=True))
    for row in report.results: ...

All of mqlite's benchmark code lives in this package, which the core never imports; the figures
and write-ups live in the repository's `bench/` (RESULTS.md). Nothing here prints; the CLI
renders a `Report`. Modules:
- `harness`: client threads, bounded in time or count, latencies; `procs`: the same over processes;
- `aio_harness`, `aio_drivers`: the asyncio rows (`--api async`): client tasks on one event loop, its lag;
- `drivers`: mqlite's verbs and the reference SQL over plain mysqlclient, table setup and seeding;
- `reference_sql`: the SQL of the reference strategies and the seeding statements;
- `peers`: huey `SqlHuey` and RQ (optional extra `peers`);
- `suite`: scenarios, comparisons and sweeps; `report`: rows, ratios and the goals;
- `plot`: throughput against clients (optional extra `plot`).

Scripts, each `python -m mqlite.bench.NAME --help`: `backlog` (pop rate against the size of the
backlog), `celery_bench` (Celery on mqlite against kombu's SQLAlchemy transport), `cluster_bench`
(a Galera cluster, 1 writer node against 3), `http_bench` (the library against `mqlite web`),
`startup` (import and cold-start times), `summarize` (several `--json` reports as Markdown).
"""

from __future__ import annotations

from .drivers import DEFAULT_REDIS_URL
from .report import FORMAT, Goal, Ratio, Report, Result
from .suite import APIS, SCENARIOS, Options, parse_scenarios, parse_sweep, run

__all__ = [
    "APIS",
    "DEFAULT_REDIS_URL",
    "FORMAT",
    "SCENARIOS",
    "Goal",
    "Options",
    "Ratio",
    "Report",
    "Result",
    "parse_scenarios",
    "parse_sweep",
    "run",
]
