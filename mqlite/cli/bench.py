"""`mqlite bench`: run the benchmark (`mqlite.bench`) and print its report.

The harness, the throwaway server and Rich's progress bar are imported inside the command: no
other command loads them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .app import Dsn, JsonOpt, command
from .render import bench_report, err, print_json


@command()
def bench(
    clients: Annotated[int, typer.Option(min=1, max=1000, help="Concurrent client threads.")] = 64,
    seconds: Annotated[Optional[float], typer.Option(min=0.1, help="Run each row this long (default 4 s).")] = None,
    messages: Annotated[Optional[int], typer.Option(min=1, help="Instead of --seconds: messages per row.")] = None,
    body_size: Annotated[int, typer.Option(min=0, help="Body size in bytes.")] = 100,
    scenario: Annotated[
        str, typer.Option(help="push, push-many, pop, claim, mixed, a comma list, or all (those five); also drain; "
                          "or wakeup (alone).")
    ] = "all",
    processes: Annotated[int, typer.Option(min=1, max=64, help="Split the clients over this many processes.")] = 1,
    compare: Annotated[bool, typer.Option(help="Also run the reference strategies and peers; print ratios.")] = False,
    sweep: Annotated[Optional[str], typer.Option(help="Client counts to run each scenario at, e.g. 1,8,32,64.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="With --sweep: draw msg/s against clients to this PNG.")] = None,
    redis_url: Annotated[
        Optional[str], typer.Option(help="Redis for the RQ peer (default: the one on this machine's port 6379).",
                                    show_default=False)
    ] = None,
    batch: Annotated[int, typer.Option(min=1, max=1000, help="Messages per push-many call.")] = 100,
    backlog: Annotated[Optional[int], typer.Option(min=0, help="Ready messages seeded before pop/claim rows.")] = None,
    api: Annotated[
        str, typer.Option(help="sync, or async: also push, pop and claim through mqlite.aio (one asyncio task per "
                          "client), with the event-loop lag; with --compare, a native async driver too.")
    ] = "sync",
    history: Annotated[
        bool, typer.Option("--history", help="Also pop and claim + ack with the queue's history on, each right "
                           "after its plain row (ratios and goals against it).")
    ] = False,
    gaps: Annotated[
        str, typer.Option(help="wakeup: seconds between two pushes, drawn in MIN-MAX (the worker is idle at each).")
    ] = "0.05-0.3",
    idle_seconds: Annotated[
        float, typer.Option(min=1, help="wakeup: how long the idle worker's statements are counted (s).")
    ] = 10.0,
    rounds: Annotated[int, typer.Option(min=1, max=20, help="wakeup: rows of each strategy, alternated.")] = 1,
    idle_max: Annotated[float, typer.Option(min=0.01, help="wakeup: the idle worker's --idle-max (s).")] = 1.0,
    queues: Annotated[
        int, typer.Option(min=1, max=10_000, help="Also push, pop and claim going round this many queues.")
    ] = 1,
    rate: Annotated[
        Optional[float], typer.Option(min=1, help="mixed: an open-loop producer at this many msg/s, consumed by "
                                      "`mqlite worker` processes (push → handler p50/p99, backlog trend).")
    ] = None,
    find_max: Annotated[
        bool, typer.Option("--find-max", help="mixed: the highest rate the worker processes keep up with (p99 ≤ "
                           "100 ms) for --seconds (default 20), against their claim-alone rate.")
    ] = False,
    workers: Annotated[int, typer.Option(min=1, max=32, help="drain, --rate, --find-max: worker processes.")] = 2,
    worker_threads: Annotated[
        int, typer.Option(min=1, max=256, help="… and the --concurrency of each worker process.")
    ] = 16,
    worker_prefetch: Annotated[
        int, typer.Option(min=1, max=1000, help="… and the --prefetch of each (messages a thread claims at once).")
    ] = 1,
    dsn: Dsn = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure push, push-many, pop, claim and mixed load; with --compare, next to the references.

    `--scenario drain --messages N`: N no-op messages through --workers `mqlite worker` processes,
    acknowledged (msg/s). `--scenario mixed --rate R` / `--find-max`: consumers as worker processes,
    a paced producer (see bench/RESULTS.md). `--queues N` adds rows going round N queues.

    Without a DSN a throwaway server is started (and removed afterwards). Every row runs on tables
    of its own, dropped afterwards, for --seconds (default 4) or --messages (capped at 120 s).
    Ratios are mqlite's rate divided by the reference's, measured in the same run.

    --json prints one object (format 1; fields are only ever added):
    config {run_id, started_at, dsn (redacted), server, clients (a list of counts), seconds, messages, cap_s,
    body_size, batch, backlog, scenarios, processes, compare, api, redis_url, machine, duration_s, queues,
    rate, find_max, workers, worker_threads, worker_prefetch, history};
    results [{scenario, strategy, kind (mqlite|sql|peer), clients, processes, messages, seconds,
    rate (msg/s), p50_ms, p99_ms (one call), backlog (ready at start; mixed: left at end), drained,
    truncated, errors, error, skipped (why, or null), client_cpu_s, server_cpu_s, lock_waits,
    pushed, consumed, e2e_p50_ms, e2e_p99_ms (push → handler start), kept_up (mixed only; kept_up
    only with --seconds: backlog left ≤ 0.5 s of pushing), loop_lag_p99_ms, loop_lag_max_ms (asyncio rows:
    how late a 1 ms sleep on the clients' event loop woke), idle_lag_p99_ms, idle_lag_max_ms (the same
    probe alone on that loop for 1 s just before), target_rate, backlog_trend (msg/s, second half),
    unhandled (paced rows), queues (round-robin rows)}];
    ratios [{numerator, denominator ("scenario/strategy"), clients, denominator_clients, ratio,
    goal, met}]; goals [{id, text, clients, target, value, met (null: not measured)}].

    --scenario wakeup (bench/wakeup.py): push → handler latency with an idle `mqlite worker` in
    another process, --messages (default 200) pushed --gaps apart, and the statements a second
    the idle worker sends (counted by a relay between it and the server; also the server's
    global Questions, where other clients count too); rows mqlite and no-ring (polling alone).
    --json: config {messages, gap_min, gap_max, idle_seconds, idle_max, rounds, seed, dsn,
    machine}; results [{scenario, strategy, messages, received, duplicates, p50_ms, p90_ms,
    p99_ms, max_ms, idle_statements_per_s, server_questions_per_s, idle_seconds, error,
    load_avg [start, end]}].
    """
    if scenario == "wakeup":
        _wakeup(dsn, messages or 200, gaps, idle_seconds, rounds, idle_max, as_json)
        return
    from .. import bench as harness
    from ..bench import plot as bench_plot
    from ..testing import dsn_or_throwaway

    if seconds is not None and messages is not None and not find_max:
        # With --find-max, --seconds is each paced run and --messages the claim-alone backlog.
        raise typer.BadParameter("give --seconds or --messages, not both")
    if api not in harness.APIS:
        raise typer.BadParameter(f"must be one of {', '.join(harness.APIS)}", param_hint="--api")
    if rate is not None and find_max:
        raise typer.BadParameter("give --rate or --find-max, not both")
    try:
        scenarios = harness.parse_scenarios(scenario)
        if (rate is not None or find_max) and "mixed" not in scenarios:
            raise ValueError("--rate and --find-max pace the mixed scenario: add --scenario mixed")
        counts = harness.parse_sweep(sweep) if sweep else ()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if plot is not None:
        if not counts:
            raise typer.BadParameter("--plot draws a sweep: give --sweep too, e.g. --sweep 1,8,32,64")
        bench_plot.require()
    opts = harness.Options(
        clients=clients, seconds=seconds, messages=messages, body_size=body_size, scenarios=scenarios,
        processes=processes, compare=compare, sweep=counts, batch=batch, backlog=backlog,
        redis_url=redis_url or harness.DEFAULT_REDIS_URL, api=api, queues=queues, rate=rate, find_max=find_max,
        workers=workers, worker_threads=worker_threads, worker_prefetch=worker_prefetch, history=history,
    )
    with dsn_or_throwaway(dsn) as target, _progress_bar() as progress:
        report = harness.run(target, opts, progress)
    if plot is not None:
        bench_plot.sweep_plot(report, plot)
    if as_json:
        print_json(report.as_dict())
        return
    bench_report(report, plot)


def _wakeup(dsn: str | None, messages: int, gaps: str, idle_seconds: float, rounds: int, idle_max: float,
            as_json: bool) -> None:
    from ..bench import wakeup
    from ..config import parse_dsn
    from ..testing import dsn_or_throwaway

    low, _, high = gaps.partition("-")
    try:
        gap_min, gap_max = float(low), float(high or low)
    except ValueError:
        raise typer.BadParameter("give MIN-MAX seconds, e.g. 0.3-2", param_hint="--gaps") from None
    if not 0 <= gap_min <= gap_max:
        raise typer.BadParameter("need 0 <= MIN <= MAX", param_hint="--gaps")
    opts = wakeup.WakeOptions(messages=messages, gap_min=gap_min, gap_max=gap_max, idle_seconds=idle_seconds,
                              rounds=rounds, idle_max=idle_max)
    with dsn_or_throwaway(dsn) as target:
        rows = wakeup.run(target, opts)
        data = wakeup.as_dict(rows, opts, parse_dsn(target).redacted())
    if as_json:
        print_json(data)
        return
    from rich.table import Table

    from .render import out

    table = Table("strategy", "received", "p50 ms", "p90 ms", "p99 ms", "max ms", "idle stmt/s", "server q/s",
                  "error",
                  title="push → handler, idle `mqlite worker` in another process")
    for r in data["results"]:
        table.add_row(r["strategy"], f"{r['received']}/{r['messages']}", *(str(r[k]) for k in (
            "p50_ms", "p90_ms", "p99_ms", "max_ms", "idle_statements_per_s", "server_questions_per_s")),
            r["error"] or "")
    out.print(table)


@contextmanager
def _progress_bar() -> Iterator[Callable[[str, float, int], None]]:
    """A transient bar on stderr, one task per row, fed by the harness's progress callback."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[messages]:>10,} msgs"),
        TimeElapsedColumn(), console=err, transient=True,
    ) as bar:
        current: dict[str, Any] = {}

        def progress(label: str, fraction: float, done: int) -> None:
            if current.get("label") != label:
                if "task" in current:
                    bar.remove_task(current["task"])
                current.update(label=label, task=bar.add_task(label, total=1.0, messages=0))
            bar.update(current["task"], completed=fraction, messages=done)

        yield progress
