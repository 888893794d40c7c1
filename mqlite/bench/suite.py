"""Scenarios, reference strategies, sweeps, ratios and goals: one benchmark run, returned as data.

A run is a list of *rows*: one scenario (push, push-many, pop, claim, mixed) by one strategy
(mqlite, or with `compare` the references: raw INSERT, naive Dwango pop, SKIP LOCKED, huey, RQ)
at one client count. Each row runs on stores of its own (a fresh table, prefixed huey tables,
RQ keys named after the run), seeded with a backlog when it consumes, and removed afterwards.
Ratios are taken between rows of the same run and client count; goals are issue 6's.
"""

from __future__ import annotations

import os
import platform
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import partial
from typing import Any

from ..config import parse_dsn
from . import drivers, harness, peers
from .drivers import DEFAULT_REDIS_URL, Case, MqliteDriver, RawDriver
from .harness import Bound, Group
from .peers import HueyDriver, RqDriver, Skip

SCENARIOS = ("push", "push-many", "pop", "claim", "mixed")
FORMAT = 1  # bumped when a JSON field changes meaning or disappears
SEED_RATE = 40_000  # time-bound runs seed this many rows per second of run (about the fastest pop seen here)
SEED_MIN, SEED_MAX = 10_000, 2_000_000
RQ_SEED_RATE = 8_000  # RQ dequeues far slower; seeding it over a pipeline is slower than SQL copies
KEPT_UP_SECONDS = 0.5  # mixed: consumers kept up if the backlog left is at most this much pushing

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

    def bound(self) -> Bound:
        if self.messages is not None:
            return Bound(messages=self.messages, cap=self.cap)
        return Bound(seconds=self.seconds if self.seconds is not None else 4.0, cap=self.cap)

    @property
    def client_counts(self) -> tuple[int, ...]:
        return self.sweep or (self.clients,)


@dataclass
class Result:
    """One row. Fields that do not apply are None; the set of fields is the same for every row."""

    scenario: str
    strategy: str
    kind: str  # "mqlite" | "sql" (reference SQL over mysqlclient) | "peer" (huey, RQ)
    clients: int
    processes: int
    messages: int = 0
    seconds: float = 0.0
    rate: float = 0.0  # messages per second
    p50_ms: float | None = None  # latency of one call (push-many: one batch; claim: claim + ack)
    p99_ms: float | None = None
    backlog: int | None = None  # ready messages at the start (pop, claim) or left at the end (mixed)
    drained: bool = False  # the backlog ran out before the bound: rate measured until then
    truncated: bool = False  # a --messages row stopped at the time cap
    errors: int = 0
    error: str | None = None
    skipped: str | None = None
    client_cpu_s: float | None = None
    server_cpu_s: float | None = None  # the server process's CPU time, when it runs on this machine
    lock_waits: int | None = None  # Innodb_row_lock_waits during the row (server-wide)
    pushed: int | None = None  # mixed only, from here on
    consumed: int | None = None
    e2e_p50_ms: float | None = None  # push -> handler start
    e2e_p99_ms: float | None = None
    kept_up: bool | None = None  # time mode: the backlog left is at most KEPT_UP_SECONDS of pushing

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Ratio:
    numerator: str  # "scenario/strategy"
    denominator: str
    clients: int
    denominator_clients: int
    ratio: float
    goal: float | None = None  # minimum wanted by issue 6
    met: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Goal:
    id: str
    text: str
    clients: int
    target: float
    value: float | None = None  # None: not measured in this run
    met: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Report:
    config: dict[str, Any]
    results: list[Result] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "config": self.config,
            "results": [r.as_dict() for r in self.results],
            "ratios": [r.as_dict() for r in self.ratios],
            "goals": [g.as_dict() for g in self.goals],
        }

    def row(self, scenario: str, strategy: str, clients: int) -> Result | None:
        for r in self.results:
            if (r.scenario, r.strategy, r.clients) == (scenario, strategy, clients) and not r.skipped and r.rate > 0:
                return r
        return None


# -- what runs ---------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    scenario: str
    strategy: str
    kind: str
    store: str  # "table" | "huey" | "redis"
    driver: Callable[[Case], Any]
    role: str
    seeded: bool = False
    per_call: int = 1


PLANS: dict[str, list[Plan]] = {
    "push": [
        Plan("push", "mqlite", "mqlite", "table", MqliteDriver, "push"),
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
        Plan("pop", "naive-pop", "sql", "table", RawDriver, "naive-pop", seeded=True),
        Plan("pop", "skip-locked", "sql", "table", RawDriver, "skip-locked", seeded=True),
        Plan("pop", "huey", "peer", "huey", HueyDriver, "pop", seeded=True),
        Plan("pop", "rq", "peer", "redis", RqDriver, "pop", seeded=True),
    ],
    "claim": [Plan("claim", "mqlite", "mqlite", "table", MqliteDriver, "claim", seeded=True)],
    "mixed": [Plan("mixed", "mqlite", "mqlite", "table", MqliteDriver, "mixed")],
}

# (numerator, denominator, minimum wanted by issue 6 or None)
RATIOS: list[tuple[tuple[str, str], tuple[str, str], float | None]] = [
    (("push", "mqlite"), ("push", "raw-insert"), 0.8),
    (("push", "mqlite"), ("push", "huey"), 2.5),
    (("push", "mqlite"), ("push", "rq"), 3.0),
    (("push-many", "mqlite"), ("push-many", "raw-insert-batch"), None),
    (("pop", "mqlite"), ("push", "raw-insert"), 0.5),
    (("pop", "mqlite"), ("pop", "naive-pop"), 20.0),
    (("pop", "mqlite"), ("pop", "skip-locked"), None),
    (("pop", "mqlite"), ("pop", "huey"), 20.0),
    (("pop", "mqlite"), ("pop", "rq"), 3.0),
    (("claim", "mqlite"), ("pop", "mqlite"), 0.7),
]
# Issue 6's goals: id, text, numerator, denominator, target. Ratios at the run's largest client
# count; `pop_scaling` compares that count with 8 clients; `push_p99_ms` is a latency, not a ratio.
GOALS: list[tuple[str, str, str, str, float]] = [
    ("push_vs_insert", "push ≥ 0.8× raw INSERT", "push/mqlite", "push/raw-insert", 0.8),
    ("push_p99_ms", "push p99 < 5 ms", "push/mqlite", "", 5.0),
    ("pop_vs_insert", "pop ≥ 0.5× raw INSERT", "pop/mqlite", "push/raw-insert", 0.5),
    ("pop_vs_naive", "pop ≥ 20× naive Dwango pop", "pop/mqlite", "pop/naive-pop", 20.0),
    ("pop_scaling", "pop at 64 ≥ 0.8× pop at 8", "pop/mqlite", "pop/mqlite", 0.8),
    ("claim_vs_pop", "claim + ack ≥ 0.7× pop", "claim/mqlite", "pop/mqlite", 0.7),
    ("push_vs_huey", "push ≥ 2.5× huey SqlHuey push", "push/mqlite", "push/huey", 2.5),
    ("pop_vs_huey", "pop ≥ 20× huey SqlHuey pop", "pop/mqlite", "pop/huey", 20.0),
    ("push_vs_rq", "push ≥ 3× RQ enqueue", "push/mqlite", "push/rq", 3.0),
    ("pop_vs_rq", "pop ≥ 3× RQ dequeue", "pop/mqlite", "pop/rq", 3.0),
]


def parse_scenarios(text: str) -> tuple[str, ...]:
    """`all`, one scenario, or a comma-separated list; raises ValueError naming the bad one."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names or names == ["all"]:
        return SCENARIOS
    for name in names:
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r} (choose from {', '.join(SCENARIOS)} or all)")
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

    def close(self) -> None:
        self.conn.close()


# -- running -----------------------------------------------------------------------


class _Run:
    def __init__(self, dsn: str, opts: Options, progress: Progress | None) -> None:
        self.dsn, self.opts, self.progress = dsn, opts, progress
        self.id = uuid.uuid4().hex[:6]
        self.n = 0
        self.probe = ServerProbe(dsn)

    def case(self, clients: int) -> Case:
        self.n += 1
        return Case(
            dsn=self.dsn, table=f"mqb_{self.id}_{self.n:03d}", queue=f"mqb-{self.id}-{self.n:03d}",
            body_size=self.opts.body_size, batch=self.opts.batch, pool_size=clients + 4,
            redis_url=self.opts.redis_url,
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
    if plan.store == "table":
        drivers.create_table(case.dsn, case.table)
        if rows:
            run.tell(f"seeding {label}", 0.0, 0)
            return drivers.seed(
                case.dsn, case.table, case.queue, rows, case.body_size,
                tick=lambda done: run.tell(f"seeding {label}", done / rows, done),
            )
    elif plan.store == "huey":
        rows = peers.huey_setup(case, rows)
    elif plan.store == "redis":
        rows = peers.rq_setup(case, rows)
    return rows if plan.seeded else None


def _teardown(plan: Plan, case: Case) -> None:
    if plan.store == "table":
        drivers.drop_table(case.dsn, case.table)
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
    case = run.case(clients)
    try:
        result.backlog = _setup(run, plan, case, label)
        if plan.strategy == "skip-locked" and not _has_skip_locked(run.probe.version):
            raise Skip(f"{run.probe.version} has no SKIP LOCKED (MySQL 8.0.1+, MariaDB 10.6+)")
        cpu0, waits0 = run.probe.snapshot()
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
    if result.scenario == "mixed":
        result.pushed, result.consumed = stats[0].messages, main.messages
        e2e = main.samples.get("e2e", [])
        result.e2e_p50_ms = _ms(harness.percentile(e2e, 0.50))
        result.e2e_p99_ms = _ms(harness.percentile(e2e, 0.99))


def _has_skip_locked(version: str) -> bool:
    numbers = tuple(int(x) for x in version.split("-")[0].split(".")[:3] if x.isdigit())
    return numbers >= ((10, 6) if "mariadb" in version.lower() else (8, 0, 1))


def _ratios(report: Report, counts: Sequence[int]) -> None:
    for c in counts:
        for (ns, nn), (ds, dn), goal in RATIOS:
            num, den = report.row(ns, nn, c), report.row(ds, dn, c)
            if num and den:
                ratio = round(num.rate / den.rate, 3)
                met = None if goal is None else ratio >= goal
                report.ratios.append(Ratio(f"{ns}/{nn}", f"{ds}/{dn}", c, c, ratio, goal, met))
    top = max(counts)
    base = 8 if 8 in counts and top > 8 else None
    if base:
        num, den = report.row("pop", "mqlite", top), report.row("pop", "mqlite", base)
        if num and den:
            ratio = round(num.rate / den.rate, 3)
            report.ratios.append(Ratio("pop/mqlite", "pop/mqlite", top, base, ratio, 0.8, ratio >= 0.8))


def _goals(report: Report, counts: Sequence[int]) -> None:
    top = max(counts)
    for gid, text, num, den, target in GOALS:
        goal = Goal(gid, text, top, target)
        if gid == "push_p99_ms":
            row = report.row("push", "mqlite", top)
            if row and row.p99_ms is not None:
                goal.value, goal.met = row.p99_ms, row.p99_ms < target
        else:
            base = 8 if gid == "pop_scaling" else top
            for r in report.ratios:
                if (r.numerator, r.denominator, r.clients, r.denominator_clients) == (num, den, top, base):
                    goal.value, goal.met = r.ratio, r.ratio >= target
        report.goals.append(goal)


def run(dsn: str, opts: Options, progress: Progress | None = None) -> Report:
    """Run every scenario of `opts` (and the references with `compare`) at each client count."""
    began = time.monotonic()
    bench = _Run(dsn, opts, progress)
    try:
        report = Report(config=_config(bench, opts))
        for clients in opts.client_counts:
            for scenario in opts.scenarios:
                plans = PLANS[scenario] if opts.compare else PLANS[scenario][:1]
                for plan in plans:
                    report.results.append(run_row(bench, plan, clients))
        _ratios(report, opts.client_counts)
        _goals(report, opts.client_counts)
        report.config["duration_s"] = round(time.monotonic() - began, 1)
        return report
    finally:
        bench.probe.close()


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
        "redis_url": peers.redact_url(opts.redis_url) if opts.compare else None,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": sys.platform},
        "duration_s": None,
    }
