"""The `mqlite` command: parse, call the library, print. The only module that imports typer."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import bench as bench_mod
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
    messages: Annotated[int, typer.Option(min=1, help="Messages to push, then pop.")] = 20_000,
    body_size: Annotated[int, typer.Option(min=0, help="Body size in bytes.")] = 100,
    dsn: Dsn = None,
    as_json: JsonOpt = False,
) -> None:
    """Push then pop MESSAGES with CLIENTS threads; prints msg/s and latency.

    Without a DSN a throwaway server is started (and removed afterwards).
    """
    with dsn_or_throwaway(dsn) as target:
        with Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(), console=err, transient=True, disable=as_json,
        ) as bar:
            tasks: dict[str, Any] = {}

            def progress(scenario: str, done: int, total: int) -> None:
                if scenario not in tasks:
                    tasks[scenario] = bar.add_task(scenario, total=total)
                bar.update(tasks[scenario], completed=done)

            results = bench_mod.run(target, clients=clients, messages=messages, body_size=body_size, progress=progress)
    if as_json:
        _print_json([r.as_dict() for r in results])
        return
    t = Table("scenario", "clients", "messages", "seconds", "msg/s", "p50 ms", "p99 ms")
    for r in results:
        t.add_row(r.scenario, str(r.clients), str(r.messages), f"{r.seconds:.2f}", f"{r.rate:,.0f}",
                  f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}")
    out.print(t)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
