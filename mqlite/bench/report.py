"""What a run returns: rows, ratios between rows of the same run, and the benchmark's goals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT = 1  # bumped when a JSON field changes meaning or disappears


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
    loop_lag_p99_ms: float | None = None  # asyncio rows: how late a 1 ms sleep on the clients' loop woke
    loop_lag_max_ms: float | None = None
    idle_lag_p99_ms: float | None = None  # the same probe on the same loop alone, just before: the floor
    idle_lag_max_ms: float | None = None
    target_rate: float | None = None  # mixed --rate / --find-max: what the paced producer was asked for
    backlog_trend: float | None = None  # paced: slope of the ready backlog over the run's second half, msg/s
    unhandled: int | None = None  # paced: messages pushed and never handled within the grace after the run
    queues: int | None = None  # --queues N rows: how many queues the clients went round

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Ratio:
    numerator: str  # "scenario/strategy"
    denominator: str
    clients: int
    denominator_clients: int
    ratio: float
    goal: float | None = None  # the minimum the goals ask for
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


# (numerator, denominator, minimum the goals ask for, or None)
RATIOS: list[tuple[tuple[str, str], tuple[str, str], float | None]] = [
    (("push", "mqlite"), ("push", "raw-insert"), 0.8),
    (("push", "mqlite"), ("push", "huey"), 2.5),
    (("push", "mqlite"), ("push", "rq"), 3.0),
    (("push-many", "mqlite"), ("push-many", "raw-insert-batch"), None),
    (("pop", "mqlite"), ("push", "raw-insert"), 0.5),
    (("pop", "mqlite"), ("pop", "naive-pop"), 20.0),
    (("pop", "mqlite"), ("pop", "skip-locked"), None),
    (("pop", "mqlite"), ("pop", "bare-group-claim"), 0.8),
    (("pop", "mqlite"), ("pop", "huey"), 20.0),
    (("pop", "mqlite"), ("pop", "rq"), 3.0),
    (("claim", "mqlite"), ("pop", "mqlite"), 0.8),
    # `--history`: the same scenario with the queue's history on, against the plain row of the run.
    (("pop", "mqlite-history"), ("pop", "mqlite"), 0.7),
    (("claim", "mqlite-history"), ("claim", "mqlite"), 0.7),
    # `--api async`: the asyncio rows against the sync API's at the same count (tasks vs threads).
    (("push", "mqlite-async"), ("push", "mqlite"), 0.8),
    (("pop", "mqlite-async"), ("pop", "mqlite"), None),
    (("claim", "mqlite-async"), ("claim", "mqlite"), 0.8),
    (("push", "mqlite-async"), ("push", "asyncmy-native"), None),
    (("claim", "mqlite-async"), ("claim", "asyncmy-native"), None),
]
# The goals (stated at 64 clients and 100-byte bodies; bench/RESULTS.md says which are met): id, text,
# numerator, denominator, target. Ratios at the run's largest client
# count; `pop_scaling` compares that count with 8 clients; `push_p99_ms` is a latency, not a ratio.
GOALS: list[tuple[str, str, str, str, float]] = [
    ("push_vs_insert", "push ≥ 0.8× raw INSERT", "push/mqlite", "push/raw-insert", 0.8),
    ("push_p99_ms", "push p99 < 5 ms", "push/mqlite", "", 5.0),
    ("pop_vs_insert", "pop ≥ 0.5× raw INSERT", "pop/mqlite", "push/raw-insert", 0.5),
    ("pop_vs_naive", "pop ≥ 20× naive Dwango pop", "pop/mqlite", "pop/naive-pop", 20.0),
    ("pop_scaling", "pop at 64 ≥ 0.8× pop at 8", "pop/mqlite", "pop/mqlite", 0.8),
    ("pop_vs_bare", "pop ≥ 0.8× bare group claim", "pop/mqlite", "pop/bare-group-claim", 0.8),
    ("claim_vs_pop", "claim + ack ≥ 0.8× pop", "claim/mqlite", "pop/mqlite", 0.8),
    ("push_vs_huey", "push ≥ 2.5× huey SqlHuey push", "push/mqlite", "push/huey", 2.5),
    ("pop_vs_huey", "pop ≥ 20× huey SqlHuey pop", "pop/mqlite", "pop/huey", 20.0),
    ("push_vs_rq", "push ≥ 3× RQ enqueue", "push/mqlite", "push/rq", 3.0),
    ("pop_vs_rq", "pop ≥ 3× RQ dequeue", "pop/mqlite", "pop/rq", 3.0),
]
# Goals of the asyncio rows (`--api async`); the loop lag ones are the worst of the async rows.
ASYNC_GOALS: list[tuple[str, str, str, str, float]] = [
    ("async_push_vs_sync", "async push (tasks) ≥ 0.8× sync push (threads)", "push/mqlite-async", "push/mqlite", 0.8),
    ("async_claim_vs_sync", "async take + ack ≥ 0.8× sync claim", "claim/mqlite-async", "claim/mqlite", 0.8),
    ("loop_lag_p99_ms", "event-loop lag p99 ≤ 5 ms", "", "", 5.0),
    ("loop_lag_max_ms", "event-loop lag max ≤ 50 ms", "", "", 50.0),
]

# Goals of `--history` (issue 17): keeping history costs at most 30 %.
HISTORY_GOALS: list[tuple[str, str, str, str, float]] = [
    ("history_claim", "claim + ack, history on ≥ 0.7× off", "claim/mqlite-history", "claim/mqlite", 0.7),
    ("history_pop", "pop, history on ≥ 0.7× off", "pop/mqlite-history", "pop/mqlite", 0.7),
]


QUEUES_GOAL = 0.7  # `--queues N`: round-robin over N queues against one queue, same run


def _round_robin_ratios(queues: int) -> list[tuple[tuple[str, str], tuple[str, str], float | None]]:
    if queues <= 1:
        return []
    return [((s, f"mqlite-{queues}q"), (s, "mqlite"), QUEUES_GOAL if s == "pop" else None)
            for s in ("push", "pop", "claim")]


def add_ratios(report: Report, counts: Sequence[int], queues: int = 1) -> None:
    for c in counts:
        for (ns, nn), (ds, dn), goal in RATIOS + _round_robin_ratios(queues):
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


def add_goals(
    report: Report, counts: Sequence[int], api: str = "sync", queues: int = 1, history: bool = False
) -> None:
    top = max(counts)
    more = [(f"pop_{queues}_queues", f"pop over {queues} queues round-robin ≥ {QUEUES_GOAL}× one queue",
             f"pop/mqlite-{queues}q", "pop/mqlite", QUEUES_GOAL)] if queues > 1 else []
    extra = (ASYNC_GOALS if api == "async" else []) + more + (HISTORY_GOALS if history else [])
    for gid, text, num, den, target in GOALS + extra:
        goal = Goal(gid, text, top, target)
        if gid.startswith("loop_lag_"):
            lags = [getattr(r, gid) for r in report.results
                    if r.clients == top and r.strategy == "mqlite-async" and getattr(r, gid) is not None]
            if lags:
                goal.value = max(lags)
                goal.met = goal.value <= target
        elif gid == "push_p99_ms":
            row = report.row("push", "mqlite", top)
            if row and row.p99_ms is not None:
                goal.value, goal.met = row.p99_ms, row.p99_ms < target
        else:
            base = 8 if gid == "pop_scaling" else top
            for r in report.ratios:
                if (r.numerator, r.denominator, r.clients, r.denominator_clients) == (num, den, top, base):
                    goal.value, goal.met = r.ratio, r.ratio >= target
        report.goals.append(goal)


# Goals of the worker-process scenarios (drain, paced mixed / find-max).
DRAIN_GOAL = 10_000.0  # msg/s through `mqlite worker` processes, acknowledged
MAX_RATE_GOAL = 0.7  # highest rate kept up ÷ the claim-alone rate of the same workers
HALF_RATE_P99_MS = 25.0  # push -> handler p99 at 0.5× the claim-alone rate


def add_worker_goals(
    report: Report, rows: Sequence[Result], claim_alone: float | None, best: float | None
) -> None:
    """Goals from the rows of `sustained`: the drain rate; with find-max, the best rate and p99 at 0.5×."""
    for r in rows:
        if r.scenario == "drain" and r.strategy == "mqlite-worker":
            report.goals.append(Goal("drain_rate", f"drain ≥ {DRAIN_GOAL:,.0f} msg/s through worker processes",
                                     r.clients, DRAIN_GOAL, r.rate, r.rate >= DRAIN_GOAL))
    if not claim_alone:
        return
    clients = rows[0].clients
    value = None if best is None else round(best / claim_alone, 3)
    report.ratios.append(Ratio("mixed/mqlite-worker (best kept up)", "drain/mqlite-worker-claim-alone", clients,
                               clients, value or 0.0, MAX_RATE_GOAL, bool(value and value >= MAX_RATE_GOAL)))
    report.goals.append(Goal("mixed_max_vs_claim_alone", f"highest rate kept up (p99 ≤ 100 ms) ≥ {MAX_RATE_GOAL}× "
                             "claim-alone", clients, MAX_RATE_GOAL, value, bool(value and value >= MAX_RATE_GOAL)))
    half = next((r for r in rows if r.target_rate and abs(r.target_rate - round(claim_alone / 2, 1)) < 0.11), None)
    goal = Goal("mixed_p99_at_half_ms", f"push → handler p99 ≤ {HALF_RATE_P99_MS:g} ms at 0.5× claim-alone",
                clients, HALF_RATE_P99_MS)
    if half is not None:
        goal.value = half.e2e_p99_ms
        goal.met = half.e2e_p99_ms is not None and half.e2e_p99_ms <= HALF_RATE_P99_MS
    report.goals.append(goal)
