"""Scenarios, reference strategies, sweeps, ratios and goals: one benchmark run, returned as data.

A run is a list of *rows*: one scenario (push, push-many, pop, claim, mixed) by one strategy
(mqlite, or with `compare` the references: raw INSERT, naive Dwango pop, SKIP LOCKED, huey, RQ)
at one client count. Each row runs on stores of its own (a fresh table, prefixed huey tables,
RQ keys named after the run), seeded with a backlog when it consumes, and removed afterwards.
Ratios are taken between rows of the same run and client count; the goals are `report.GOALS`.
"""

from __future__ import annotations

import os
import platform
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import partial
from typing import Any

from ..config import parse_dsn
from . import aio_harness, drivers, harness, peers, sustained
from .aio_drivers import AsyncMqliteDriver, NativeDriver
from .drivers import DEFAULT_REDIS_URL, Case, MqliteDriver, RawDriver
from .harness import Bound, Group
from .peers import HueyDriver, RqDriver, Skip
from .reference_sql import reference_statements
from .report import Report, Result, add_goals, add_ratios, add_worker_goals

SCENARIOS = ("push", "push-many", "pop", "claim", "mixed")  # `all`
WORKER_SCENARIOS = ("drain",)  # consumers as `mqlite worker` processes (sustained.py); named only
PACED_SECONDS = 20.0  # mixed --rate / --find-max: each paced run, unless --seconds says otherwise
SEED_RATE = 40_000  # time-bound runs seed this many rows per second of run (about the fastest pop seen here)
SEED_MIN, SEED_MAX = 10_000, 2_000_000
RQ_SEED_RATE = 8_000  # RQ dequeues far slower; seeding it over a pipeline is slower than SQL copies
SETTLE_SECONDS = 5.0  # at most this long between rows for the server to end the last row's sessions
KEPT_UP_SECONDS = 0.5  # mixed: consumers kept up if the backlog left is at most this much pushing
SCANS = {"naive-pop": "naive_claim", "skip-locked": "skip_locked_take"}  # reference statements checked by EXPLAIN

Progress = Callable[[str, float, int], None]  # (what is running, fraction done, messages so far)


@dataclass(frozen=True)
class Options:
    clients: int = 64
    seconds: float | None = None  # default 4 when neither seconds nor messages is given
    messages: int | None = None
    body_size: int = 100
    scenarios: tuple[str, ...] = SCENARIOS
    processes: int = 1
    compare: bool = False
    sweep: tuple[int, ...] = ()
    batch: int = 100
    backlog: int | None = None
    redis_url: str = DEFAULT_REDIS_URL
    cap: float = 120.0  # no row runs longer than this, whatever the bound
    api: str = "sync"  # "async": also the asyncio rows (tasks on one event loop) of push, pop and claim
    history: bool = False  # also pop and claim on a queue keeping history, right after the plain rows
    queues: int = 1  # > 1: also push, pop and claim rows going round this many queues
    rate: float | None = None  # mixed: an open-loop producer at this rate, consumers as worker processes
    find_max: bool = False  # mixed: search the highest rate the worker processes keep up with
    workers: int = 2  # drain, paced mixed: `mqlite worker` processes
    worker_threads: int = 16  # … and --concurrency of each
    worker_prefetch: int = 1  # … and --prefetch of each

    def bound(self) -> Bound:
        if self.messages is not None:
            return Bound(messages=self.messages, cap=self.cap)
        return Bound(seconds=self.seconds if self.seconds is not None else 4.0, cap=self.cap)

    @property
    def client_counts(self) -> tuple[int, ...]:
        return self.sweep or (self.clients,)


# -- what runs ---------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    scenario: str
    strategy: str
    kind: str
    store: str  # "table" (mqlite's schema) | "reftable" (the references' fixed shape) | "huey" | "redis"
    driver: Callable[[Case], Any]
    role: str
    seeded: bool = False
    per_call: int = 1
    tasks: bool = False  # clients are asyncio tasks on one event loop (aio_harness), not threads
    history: bool = False  # the queue keeps history (`Queue.keep_history`) before the row runs
    round_robin: bool = False  # the clients go round `Options.queues` queues


PLANS: dict[str, list[Plan]] = {
    "push": [
        Plan("push", "mqlite", "mqlite", "table", MqliteDriver, "push"),
        # The push ceiling: the same INSERT into a table of mqlite's own schema (same indexes), so
        # the ratio measures what the library adds, not what its columns and indexes cost.
        Plan("push", "raw-insert", "sql", "table", RawDriver, "insert"),
        Plan("push", "huey", "peer", "huey", HueyDriver, "push"),
        Plan("push", "rq", "peer", "redis", RqDriver, "push"),
    ],
    "push-many": [
        # per_call=0: one call pushes `batch` messages
        Plan("push-many", "mqlite", "mqlite", "table", MqliteDriver, "push-many", per_call=0),
        Plan("push-many", "raw-insert-batch", "sql", "table", RawDriver, "insert-many", per_call=0),
    ],
    "pop": [
        Plan("pop", "mqlite", "mqlite", "table", MqliteDriver, "pop", seeded=True),
        # mqlite's own claim / read-back / delete of 64 rows from plain threads, one set in flight:
        # the SQL's cost without the library around it.
        Plan("pop", "bare-group-claim", "sql", "table", RawDriver, "group-claim", seeded=True, per_call=64),
        Plan("pop", "naive-pop", "sql", "reftable", RawDriver, "naive-pop", seeded=True),
        Plan("pop", "skip-locked", "sql", "reftable", RawDriver, "skip-locked", seeded=True),
        Plan("pop", "huey", "peer", "huey", HueyDriver, "pop", seeded=True),
        Plan("pop", "rq", "peer", "redis", RqDriver, "pop", seeded=True),
    ],
    "claim": [Plan("claim", "mqlite", "mqlite", "table", MqliteDriver, "claim", seeded=True)],
    "mixed": [Plan("mixed", "mqlite", "mqlite", "table", MqliteDriver, "mixed")],
}

# `--api async`: the same scenarios through `mqlite.aio`, one task per client on one event loop,
# next to the sync rows of the same run; with `compare`, the native async driver shape too.
ASYNC_PLANS: dict[str, list[Plan]] = {
    "push": [
        Plan("push", "mqlite-async", "mqlite", "table", AsyncMqliteDriver, "push", tasks=True),
        Plan("push", "asyncmy-native", "sql", "table", NativeDriver, "push", tasks=True),
    ],
    "pop": [Plan("pop", "mqlite-async", "mqlite", "table", AsyncMqliteDriver, "pop", seeded=True, tasks=True)],
    "claim": [
        Plan("claim", "mqlite-async", "mqlite", "table", AsyncMqliteDriver, "claim", seeded=True, tasks=True),
        Plan("claim", "asyncmy-native", "sql", "table", NativeDriver, "claim", seeded=True, tasks=True),
    ],
}
APIS = ("sync", "async")
# `--queues N`: push, pop and claim again, each call on the next of N queues (strategy mqlite-<N>q).
ROUND_ROBIN = {
    name: Plan(name, "mqlite-{n}q", "mqlite", "table", MqliteDriver, name, seeded=name != "push", round_robin=True)
    for name in ("push", "pop", "claim")
}
# `--history`: pop and claim + ack again with the queue's history on, next to the plain rows.
HISTORY_PLANS: dict[str, list[Plan]] = {
    "pop": [Plan("pop", "mqlite-history", "mqlite", "table", MqliteDriver, "pop", seeded=True, history=True)],
    "claim": [Plan("claim", "mqlite-history", "mqlite", "table", MqliteDriver, "claim", seeded=True, history=True)],
}


def parse_scenarios(text: str) -> tuple[str, ...]:
    """`all`, one scenario, or a comma-separated list; raises ValueError naming the bad one."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names or names == ["all"]:
        return SCENARIOS
    known = SCENARIOS + WORKER_SCENARIOS
    for name in names:
        if name not in known:
            raise ValueError(f"unknown scenario {name!r} (choose from {', '.join(known)} or all)")
    return tuple(dict.fromkeys(names))


def parse_sweep(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"--sweep wants client counts like 1,8,32,64, not {text!r}") from None
    if not counts or any(c < 1 for c in counts):
        raise ValueError(f"--sweep wants positive client counts, not {text!r}")
    return tuple(sorted(set(counts)))


# -- the server, seen from outside -----------------------------------------------


class ServerProbe:
    """Server-wide counters around each row: CPU time of the server process (when local), lock waits."""

    def __init__(self, dsn: str) -> None:
        self.conn = drivers.connect(dsn)
        cur = self.conn.cursor()
        cur.execute("SELECT VERSION(), @@pid_file, @@hostname")
        self.version, pid_file, _ = cur.fetchone()
        cur.close()
        self._stat = self._find_stat(parse_dsn(dsn), str(pid_file or ""))

    @staticmethod
    def _find_stat(settings: Any, pid_file: str) -> str | None:
        local = settings.unix_socket or all(h in ("127.0.0.1", "localhost", "::1") for h, _ in settings.hosts)
        try:
            pid = int(open(pid_file).read().strip()) if local and pid_file else 0
            stat = f"/proc/{pid}/stat"
            comm = open(f"/proc/{pid}/comm").read().strip()
        except (OSError, ValueError):
            return None
        return stat if pid and comm in ("mariadbd", "mysqld") else None

    def snapshot(self) -> tuple[float | None, int]:
        cpu = None
        if self._stat:
            try:
                fields = open(self._stat).read().rsplit(")", 1)[1].split()
                cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except (OSError, ValueError, IndexError):
                cpu = None
        cur = self.conn.cursor()
        cur.execute("SHOW GLOBAL STATUS LIKE 'Innodb_row_lock_waits'")
        row = cur.fetchone()
        cur.close()
        return cpu, int(row[1]) if row else 0

    def connections(self) -> int:
        cur = self.conn.cursor()
        cur.execute("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
        row = cur.fetchone()
        cur.close()
        return int(row[1]) if row else 0

    def settle(self, ceiling: int, timeout: float = SETTLE_SECONDS) -> None:
        """Wait (bounded) until the server has let go of the last row's sessions.

        A client's close returns before the server has ended the session; 64 sessions still
        ending while the next row opens 64 more can hit max_connections (151 by default).
        """
        deadline = time.monotonic() + timeout
        while self.connections() > ceiling and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.conn.close()


# -- running -----------------------------------------------------------------------


class _Run:
    def __init__(self, dsn: str, opts: Options, progress: Progress | None) -> None:
        self.dsn, self.opts, self.progress = dsn, opts, progress
        self.id = uuid.uuid4().hex[:6]
        self.n = 0
        self.probe = ServerProbe(dsn)
        self.baseline = self.probe.connections()  # sessions open before the run (ours: 1)

    def case(self, clients: int, queues: int = 1) -> Case:
        self.n += 1
        return Case(
            dsn=self.dsn, table=f"mqb_{self.id}_{self.n:03d}", queue=f"mqb-{self.id}-{self.n:03d}",
            body_size=self.opts.body_size, batch=self.opts.batch, pool_size=clients + 4,
            redis_url=self.opts.redis_url, queues=queues,
        )

    def seed_rows(self, plan: Plan) -> int:
        o = self.opts
        if o.backlog is not None:
            rows = o.backlog
        elif o.messages is not None:
            rows = o.messages
        else:
            rows = min(SEED_MAX, max(SEED_MIN, int(SEED_RATE * o.bound().limit)))
        if plan.store == "redis" and o.backlog is None and o.messages is None:
            rows = min(rows, max(SEED_MIN, int(RQ_SEED_RATE * o.bound().limit)))
        return rows

    def tell(self, label: str, fraction: float, messages: int) -> None:
        if self.progress is not None:
            self.progress(label, fraction, messages)


def _groups(plan: Plan, clients: int, opts: Options) -> list[Group]:
    per_call = plan.per_call or opts.batch
    if plan.scenario != "mixed":
        return [Group(plan.role, clients, per_call=per_call)]
    producers = clients // 2
    return [
        Group("push-stamped", producers, stop_on_empty=False),
        Group("claim-e2e", clients - producers, stop_on_empty=False),
    ]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1e3, 3)


def _setup(run: _Run, plan: Plan, case: Case, label: str) -> int | None:
    """Create the row's stores; returns the backlog seeded (None when the row does not consume)."""
    rows = run.seed_rows(plan) if plan.seeded else 0
    tick = (lambda done: run.tell(f"seeding {label}", done / rows, done)) if rows else None
    if plan.store in ("table", "reftable"):
        mqlite = plan.store == "table"
        (drivers.create_table if mqlite else drivers.create_reference_table)(case.dsn, case.table)
        if plan.history:
            drivers.keep_history(case.dsn, case.table, case.queue)
        if rows and case.queues > 1:
            names = case.queue_names
            share = -(-rows // len(names))
            rows = sum(drivers.seed(case.dsn, case.table, name, share, case.body_size) for name in names)
        elif rows:
            run.tell(f"seeding {label}", 0.0, 0)
            rows = (drivers.seed if mqlite else drivers.seed_reference)(
                case.dsn, case.table, case.queue, rows, case.body_size, tick=tick
            )
    elif plan.store == "huey":
        rows = peers.huey_setup(case, rows)
    elif plan.store == "redis":
        rows = peers.rq_setup(case, rows)
    if plan.role in SCANS:
        statement = getattr(reference_statements(case.table), SCANS[plan.role])
        note = drivers.sorting_plan(case.dsn, statement, (case.queue,))
        if note:
            raise Skip(f"its plan sorts the queue ({note}): it would lock every row it reads")
    return rows if plan.seeded else None


def _teardown(plan: Plan, case: Case) -> None:
    if plan.store == "table":
        drivers.drop_table(case.dsn, case.table)
    elif plan.store == "reftable":
        drivers.drop_reference_table(case.dsn, case.table)
    elif plan.store == "huey":
        peers.huey_teardown(case)
    elif plan.store == "redis":
        peers.rq_teardown(case)


def run_row(run: _Run, plan: Plan, clients: int) -> Result:
    opts = run.opts
    result = Result(plan.scenario, plan.strategy, plan.kind, clients, min(opts.processes, clients))
    label = f"{plan.scenario} · {plan.strategy} · {clients} clients"
    if plan.scenario == "mixed" and clients < 2:
        result.skipped = "mixed needs at least 2 clients (half push, half claim)"
        return result
    case = run.case(clients, opts.queues if plan.round_robin else 1)
    if plan.round_robin:
        result.queues = opts.queues
    try:
        result.backlog = _setup(run, plan, case, label)
        if plan.strategy == "skip-locked" and not _has_skip_locked(run.probe.version):
            raise Skip(f"{run.probe.version} has no SKIP LOCKED (MySQL 8.0.1+, MariaDB 10.6+)")
        cpu0, waits0 = run.probe.snapshot()
        if plan.tasks:
            result.processes = 1
            stats = aio_harness.run(partial(plan.driver, case), _groups(plan, clients, opts)[0], opts.bound(),
                                    tick=lambda f, m: run.tell(label, f, m))
        else:
            stats = harness.run(
                partial(plan.driver, case), _groups(plan, clients, opts), opts.bound(),
                processes=result.processes, tick=lambda f, m: run.tell(label, f, m),
            )
        cpu1, waits1 = run.probe.snapshot()
        if cpu0 is not None and cpu1 is not None:
            result.server_cpu_s = round(cpu1 - cpu0, 3)
        result.lock_waits = waits1 - waits0
        _fill(result, stats)
        if plan.scenario == "mixed":
            result.backlog = drivers.ready(case.dsn, case.table, case.queue)
            if opts.messages is None:  # in count mode consumers always finish the budget: no verdict
                pushed_rate = (result.pushed or 0) / max(stats[0].elapsed, 1e-9)
                result.kept_up = result.backlog <= pushed_rate * KEPT_UP_SECONDS
    except Skip as exc:
        result.skipped = str(exc)
    except Exception as exc:
        if plan.kind == "mqlite":
            raise
        result.skipped = f"failed: {harness._describe(exc)}"  # a reference that cannot run here
    finally:
        try:
            _teardown(plan, case)
        except Skip:
            pass
        except Exception as exc:  # noqa: BLE001 - the row's figures stand; say what was left behind
            result.error = result.error or f"cleanup of {case.table} failed: {harness._describe(exc)}"
    if plan.kind != "mqlite" and not result.skipped and result.messages == 0 and result.error:
        result.skipped = f"failed: {result.error}"
    return result


def _fill(result: Result, stats: Sequence[harness.GroupStats]) -> None:
    main = stats[-1]  # mixed: the consumers; otherwise the only group
    result.messages = main.messages
    result.seconds = round(main.elapsed, 3)
    result.rate = round(main.rate, 1)
    result.p50_ms = _ms(harness.percentile(main.latencies, 0.50))
    result.p99_ms = _ms(harness.percentile(main.latencies, 0.99))
    result.drained = main.drained
    result.truncated = main.truncated
    result.errors = sum(s.errors for s in stats)
    result.error = next((s.error for s in stats if s.error), None)
    result.client_cpu_s = round(main.cpu_seconds, 3)
    lag, idle = main.samples.get("loop_lag"), main.samples.get("loop_lag_idle")
    if lag:
        result.loop_lag_p99_ms = _ms(harness.percentile(lag, 0.99))
        result.loop_lag_max_ms = _ms(lag[-1])
    if idle:
        result.idle_lag_p99_ms = _ms(harness.percentile(idle, 0.99))
        result.idle_lag_max_ms = _ms(idle[-1])
    if result.scenario == "mixed":
        result.pushed, result.consumed = stats[0].messages, main.messages
        e2e = main.samples.get("e2e", [])
        result.e2e_p50_ms = _ms(harness.percentile(e2e, 0.50))
        result.e2e_p99_ms = _ms(harness.percentile(e2e, 0.99))


def _has_skip_locked(version: str) -> bool:
    numbers = tuple(int(x) for x in version.split("-")[0].split(".")[:3] if x.isdigit())
    return numbers >= ((10, 6) if "mariadb" in version.lower() else (8, 0, 1))


def run(dsn: str, opts: Options, progress: Progress | None = None) -> Report:
    """Run every scenario of `opts` (and the references with `compare`) at each client count."""
    began = time.monotonic()
    bench = _Run(dsn, opts, progress)
    try:
        report = Report(config=_config(bench, opts))
        for clients in opts.client_counts:
            for scenario in opts.scenarios:
                if scenario in WORKER_SCENARIOS or (scenario == "mixed" and (opts.rate or opts.find_max)):
                    _worker_rows(bench, report, scenario)
                    continue
                plans = PLANS[scenario] if opts.compare else PLANS[scenario][:1]
                if opts.api == "async":
                    more = ASYNC_PLANS.get(scenario, [])
                    plans = plans + (more if opts.compare else more[:1])
                if opts.queues > 1 and scenario in ROUND_ROBIN:
                    rr = ROUND_ROBIN[scenario]
                    plans = plans + [replace(rr, strategy=rr.strategy.format(n=opts.queues))]
                if opts.history:
                    plans = plans + HISTORY_PLANS.get(scenario, [])
                for plan in plans:
                    report.results.append(run_row(bench, plan, clients))
                    bench.probe.settle(bench.baseline + 2)
        add_ratios(report, opts.client_counts, queues=opts.queues)
        add_goals(report, opts.client_counts, api=opts.api, queues=opts.queues, history=opts.history)
        report.config["duration_s"] = round(time.monotonic() - began, 1)
        return report
    finally:
        bench.probe.close()


def _worker_rows(bench: _Run, report: Report, scenario: str) -> None:
    """The scenarios whose consumers are `mqlite worker` processes: drain, paced mixed, find-max."""
    opts = bench.opts
    consumers = sustained.Consumers(opts.workers, opts.worker_threads, opts.worker_prefetch)
    case = bench.case(consumers.processes * consumers.concurrency)
    cpu0, _ = bench.probe.snapshot()
    if scenario == "drain":
        messages = opts.messages or 100_000
        # A million messages take minutes: the cap lets a drain run at 500 msg/s or more.
        rows = sustained.drain_rows(case, messages, consumers, bench.tell, max(opts.cap, messages / 500))
        claim_alone = best = None
    else:
        seconds = opts.seconds if opts.seconds is not None else PACED_SECONDS
        rows, claim_alone, best = sustained.paced_rows(
            case, consumers, bench.tell, seconds=seconds, rate=opts.rate, find_max=opts.find_max,
            claim_alone_messages=opts.messages or max(10_000, int(2_000 * seconds)), cap=opts.cap,
        )
    cpu1, _ = bench.probe.snapshot()
    if cpu0 is not None and cpu1 is not None and len(rows) == 1:
        rows[0].server_cpu_s = round(cpu1 - cpu0, 3)
    report.results.extend(rows)
    add_worker_goals(report, rows, claim_alone, best)
    bench.probe.settle(bench.baseline + 2)


def _config(bench: _Run, opts: Options) -> dict[str, Any]:
    bound = opts.bound()
    return {
        "run_id": bench.id,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dsn": parse_dsn(bench.dsn).redacted(),
        "server": bench.probe.version,
        "clients": list(opts.client_counts),
        "seconds": bound.seconds,
        "messages": bound.messages,
        "cap_s": bound.cap,
        "body_size": opts.body_size,
        "batch": opts.batch,
        "backlog": opts.backlog,
        "scenarios": list(opts.scenarios),
        "processes": opts.processes,
        "compare": opts.compare,
        "api": opts.api,
        "history": opts.history,
        "queues": opts.queues,
        "rate": opts.rate,
        "find_max": opts.find_max,
        "workers": opts.workers,
        "worker_threads": opts.worker_threads,
        "worker_prefetch": opts.worker_prefetch,
        "redis_url": peers.redact_url(opts.redis_url) if opts.compare else None,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": sys.platform},
        "duration_s": None,
    }
