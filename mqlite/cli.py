"""The `mqlite` command: parse, call the library, print. The only module that imports typer."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import bench as bench_mod
from .bench import plot as bench_plot
from .config import DEFAULT_TABLE
from .errors import MqliteError
from .queue import Queue
from .server import dsn_or_throwaway

# Locals in tracebacks could show a DSN with its password: never print them.
app = typer.Typer(
    help="mqlite: a message queue in one MySQL/MariaDB table.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
schema_app = typer.Typer(help="Create and upgrade the messages table.", no_args_is_help=True)
app.add_typer(schema_app, name="schema")

out = Console()
err = Console(stderr=True)

Dsn = Annotated[
    Optional[str],
    typer.Option("--dsn", envvar="MQLITE_DSN", show_envvar=True, help="mysql://user:pass@host:port/db"),
]
TableOpt = Annotated[str, typer.Option("--table", help="Messages table name.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]

F = TypeVar("F", bound=Callable[..., Any])


def handles_errors(fn: F) -> F:
    """Turn an MqliteError into one red line on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MqliteError as exc:
            err.print(f"[red]mqlite: {type(exc).__name__}: {exc}[/red]", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _queue(dsn: str | None, table: str = DEFAULT_TABLE, **kwargs: Any) -> Queue:
    return Queue(dsn, table=table, **kwargs)


def _age(ts: datetime | None) -> str:
    if ts is None:
        return "-"
    seconds = max(0.0, (datetime.now() - ts).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


def _print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, default=str, indent=2) + "\n")


@schema_app.command("apply")
@handles_errors
def schema_apply(dsn: Dsn = None, table: TableOpt = DEFAULT_TABLE, as_json: JsonOpt = False) -> None:
    """Create or upgrade the messages table (idempotent)."""
    with _queue(dsn, table) as q:
        applied = q.apply_schema()
        version = q.schema_status().version
    if as_json:
        _print_json({"table": table, "applied": [m.version for m in applied], "version": version})
    elif applied:
        for m in applied:
            out.print(f"applied {m.version:03d}_{m.name}")
        out.print(f"{table}: schema at version {version}")
    else:
        out.print(f"{table}: schema already at version {version}, nothing to do")


@app.command()
@handles_errors
def push(
    queue: Annotated[str, typer.Argument(help="Queue name.")],
    body: Annotated[str, typer.Argument(help="Message body.")],
    dsn: Dsn = None,
    table: TableOpt = DEFAULT_TABLE,
) -> None:
    """Push one message; prints its id."""
    with _queue(dsn, table, pool_size=1) as q:
        out.print(q.push(queue, body))


@app.command()
@handles_errors
def pop(
    queue: Annotated[str, typer.Argument(help="Queue name.")],
    dsn: Dsn = None,
    table: TableOpt = DEFAULT_TABLE,
    as_json: JsonOpt = False,
) -> None:
    """Take one message (at-most-once) and print its body; exit status 1 when the queue is empty."""
    with _queue(dsn, table, pool_size=1) as q:
        message = q.pop(queue)
    if message is None:
        raise typer.Exit(1)
    if as_json:
        _print_json({"id": message.id, "queue": message.queue, "body": message.body.decode("utf-8", "replace")})
    else:
        sys.stdout.write(message.body.decode("utf-8", "replace") + "\n")


@app.command()
@handles_errors
def stats(dsn: Dsn = None, table: TableOpt = DEFAULT_TABLE, as_json: JsonOpt = False) -> None:
    """Depth of every queue: ready, claimed, age of the oldest ready message."""
    with _queue(dsn, table, pool_size=1) as q:
        s = q.stats()
    if as_json:
        _print_json(
            {
                "queues": {name: {"ready": v.ready, "claimed": v.claimed, "oldest_ready": v.oldest_ready}
                           for name, v in s.queues.items()},
                "sees_all_connections": s.sees_all_connections,
            }
        )
        return
    t = Table("queue", "ready", "claimed", "oldest ready")
    for v in s.queues.values():
        t.add_row(v.queue, str(v.ready), str(v.claimed), _age(v.oldest_ready))
    out.print(t)
    if not s.sees_all_connections:
        out.print("[yellow]no PROCESS privilege: recovery cannot see other sessions and relies on the restart rule[/]")


@app.command()
@handles_errors
def bench(
    clients: Annotated[int, typer.Option(min=1, max=1000, help="Concurrent client threads.")] = 64,
    seconds: Annotated[Optional[float], typer.Option(min=0.1, help="Run each row this long (default 4 s).")] = None,
    messages: Annotated[Optional[int], typer.Option(min=1, help="Instead of --seconds: messages per row.")] = None,
    body_size: Annotated[int, typer.Option(min=0, help="Body size in bytes.")] = 100,
    scenario: Annotated[str, typer.Option(help="push, push-many, pop, claim, mixed, a comma list, or all.")] = "all",
    processes: Annotated[int, typer.Option(min=1, max=64, help="Split the clients over this many processes.")] = 1,
    compare: Annotated[bool, typer.Option(help="Also run the reference strategies and peers; print ratios.")] = False,
    sweep: Annotated[Optional[str], typer.Option(help="Client counts to run each scenario at, e.g. 1,8,32,64.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="With --sweep: draw msg/s against clients to this PNG.")] = None,
    redis_url: Annotated[str, typer.Option(help="Redis for the RQ peer.")] = bench_mod.DEFAULT_REDIS_URL,
    batch: Annotated[int, typer.Option(min=1, max=1000, help="Messages per push-many call.")] = 100,
    backlog: Annotated[Optional[int], typer.Option(min=0, help="Ready messages seeded before pop/claim rows.")] = None,
    dsn: Dsn = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure push, push-many, pop, claim and mixed load; with --compare, next to the references.

    Without a DSN a throwaway server is started (and removed afterwards). Every row runs on tables
    of its own, dropped afterwards, for --seconds (default 4) or --messages (capped at 120 s).
    Ratios are mqlite's rate divided by the reference's, measured in the same run.

    --json prints one object (format 1; fields are only ever added):
    config {run_id, started_at, dsn (redacted), server, clients (a list of counts), seconds, messages, cap_s,
    body_size, batch, backlog, scenarios, processes, compare, redis_url, machine, duration_s};
    results [{scenario, strategy, kind (mqlite|sql|peer), clients, processes, messages, seconds,
    rate (msg/s), p50_ms, p99_ms (one call), backlog (ready at start; mixed: left at end), drained,
    truncated, errors, error, skipped (why, or null), client_cpu_s, server_cpu_s, lock_waits,
    pushed, consumed, e2e_p50_ms, e2e_p99_ms (push → handler start), kept_up (mixed only; kept_up
    only with --seconds: backlog left ≤ 0.5 s of pushing)}];
    ratios [{numerator, denominator ("scenario/strategy"), clients, denominator_clients, ratio,
    goal, met}]; goals [{id, text, clients, target, value, met (null: not measured)}].
    """
    if seconds is not None and messages is not None:
        raise typer.BadParameter("give --seconds or --messages, not both")
    try:
        scenarios = bench_mod.parse_scenarios(scenario)
        counts = bench_mod.parse_sweep(sweep) if sweep else ()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if plot is not None:
        if not counts:
            raise typer.BadParameter("--plot draws a sweep: give --sweep too, e.g. --sweep 1,8,32,64")
        bench_plot.require()
    opts = bench_mod.Options(
        clients=clients, seconds=seconds, messages=messages, body_size=body_size, scenarios=scenarios,
        processes=processes, compare=compare, sweep=counts, batch=batch, backlog=backlog, redis_url=redis_url,
    )
    with dsn_or_throwaway(dsn) as target:
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

            report = bench_mod.run(target, opts, progress)
    if plot is not None:
        bench_plot.sweep_plot(report, plot)
    if as_json:
        _print_json(report.as_dict())
        return
    _print_bench(report, plot)


def _print_bench(report: Any, plot: Path | None) -> None:
    # Wide enough for the table when piped to a file; a terminal's own width otherwise.
    console = out if out.is_terminal else Console(width=max(out.width, 150))
    cfg = report.config
    bound = f"{cfg['seconds']:g} s a row" if cfg["seconds"] else f"{cfg['messages']:,} messages a row"
    console.print(f"[bold]mqlite bench[/] · {cfg['server']} · {cfg['body_size']} B bodies · {bound} · "
                  f"{cfg['processes']} process(es) · run {cfg['run_id']} in {cfg['duration_s']:g} s")
    vs = {(r.denominator, r.denominator_clients): r for r in report.ratios
          if r.clients == r.denominator_clients and r.numerator.split("/")[0] == r.denominator.split("/")[0]}
    t = Table("scenario", "strategy", "clients", "msg/s", "mqlite ÷ this", "p50 / p99 ms", "CPU µs/msg\nclient · server",
              "notes")
    for r in report.results:
        if r.skipped:
            t.add_row(r.scenario, r.strategy, str(r.clients), "-", "", "", "", f"[yellow]skipped: {r.skipped}[/]")
            continue
        ratio = vs.get((f"{r.scenario}/{r.strategy}", r.clients))
        shown = ""
        if ratio is not None and r.kind != "mqlite":
            goal = "" if ratio.goal is None else f" (≥{ratio.goal:g})"
            colour = "default" if ratio.goal is None else ("green" if ratio.met else "red")
            shown = f"[{colour}]{ratio.ratio:,.2f}×{goal}[/]"
        t.add_row(
            r.scenario, f"[bold]{r.strategy}[/]" if r.kind == "mqlite" else r.strategy, str(r.clients),
            f"{r.rate:,.0f}", shown, f"{_num(r.p50_ms)} / {_num(r.p99_ms)}", _cpu(r), _notes(r),
        )
    console.print(t)
    g = Table("issue 6 goal", "clients", "value", "met")
    for goal in report.goals:
        unit = " ms" if goal.id.endswith("_ms") else "×"
        value = "not measured" if goal.value is None else f"{goal.value:,.2f}{unit}"
        met = "" if goal.met is None else ("[green]yes[/]" if goal.met else "[red]short[/]")
        g.add_row(goal.text, str(goal.clients), value, met)
    console.print(g)
    if max(cfg["clients"]) != 64 or cfg["body_size"] != 100:
        console.print("[yellow]issue 6 states its goals at 64 clients and 100-byte bodies; this run differs[/]")
    if plot is not None:
        console.print(f"plot: {plot}")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _cpu(r: Any) -> str:
    if not r.messages or r.client_cpu_s is None:
        return ""
    client = r.client_cpu_s * 1e6 / r.messages
    server = "?" if r.server_cpu_s is None else f"{r.server_cpu_s * 1e6 / r.messages:,.0f}"
    return f"{client:,.0f} · {server}"


def _notes(r: Any) -> str:
    notes = []
    if r.scenario == "mixed":
        notes.append(f"pushed {r.pushed:,}; push→handler p50 {_num(r.e2e_p50_ms)} p99 {_num(r.e2e_p99_ms)} ms; "
                     f"{r.backlog:,} left" + ("" if r.kept_up is None else
                                               ", kept up" if r.kept_up else ", [red]fell behind[/]"))
    elif r.backlog is not None:
        notes.append(f"backlog {r.backlog:,}" + (" [yellow](drained)[/]" if r.drained else ""))
    if r.truncated:
        notes.append("[yellow]hit the time cap[/]")
    if r.errors:
        notes.append(f"[red]{r.errors} error(s): {r.error}[/]")
    return "; ".join(notes)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
