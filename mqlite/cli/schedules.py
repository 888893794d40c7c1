"""Recurring schedules: `mqlite schedule add|list|remove`, and `mqlite scheduler` that ticks them."""

from __future__ import annotations

import signal
import threading
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from ..config import DEFAULT_TABLE
from ..schedule import Schedule
from .app import Dsn, JsonOpt, QueueArg, TableOpt, UsageError, app, command, duration, open_queue
from .render import out, preview, print_json

schedule_app = typer.Typer(help="Recurring messages: add, list and remove schedules.", no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")

NameArg = Annotated[str, typer.Argument(help="Schedule name (1-128 characters).", show_default=False)]


@command(schedule_app, "add")
def add(
    name: NameArg,
    queue: QueueArg,
    body: Annotated[str, typer.Argument(help="Message body pushed at each tick.", show_default=False)],
    cron: Annotated[
        Optional[str], typer.Option(help="Cron expression, e.g. '*/5 * * * *'.", show_default=False)
    ] = None,
    every: Annotated[Optional[str], typer.Option(help="Or a period: 30s, 5m, 1h, 1d.", show_default=False)] = None,
    timezone: Annotated[str, typer.Option("--timezone", help="Time zone of the cron expression.")] = "UTC",
    priority: Annotated[int, typer.Option(help="Priority of the messages (lower first).")] = 0,
    max_attempts: Annotated[Optional[int], typer.Option(help="Attempts per message.", show_default=False)] = None,
    catch_up: Annotated[str, typer.Option(help="Ticks missed while no scheduler ran: one message, or none.")] = "one",
    dsn: Dsn = None,
    table: TableOpt = DEFAULT_TABLE,
    as_json: JsonOpt = False,
) -> None:
    """Add or replace a schedule (ticked by `mqlite scheduler` or `mqlite worker --scheduler`)."""
    seconds = None if every is None else duration(every, "--every").total_seconds()
    if catch_up not in ("one", "none"):
        raise UsageError(f"--catch-up must be one or none, not {catch_up!r}")
    with open_queue(dsn, table, pool_size=1) as q:
        s = q.schedule(name, queue, body, cron=cron, every=seconds, timezone=timezone, priority=priority,
                       max_attempts=max_attempts, catch_up="one" if catch_up == "one" else "none")
    if as_json:
        print_json(_json(s))
    else:
        out.print(f"schedule {s.name}: next tick {s.next_run_at:%Y-%m-%d %H:%M:%S} UTC", highlight=False)


@command(schedule_app, "list")
def list_(dsn: Dsn = None, table: TableOpt = DEFAULT_TABLE, as_json: JsonOpt = False) -> None:
    """List the schedules, with their next tick (UTC)."""
    with open_queue(dsn, table, pool_size=1) as q:
        found = q.schedules()
    if as_json:
        print_json([_json(s) for s in found])
        return
    if not found:
        out.print("no schedules")
        return
    t = Table("name", "queue", "when", "timezone", "priority", "catch up", "next (UTC)", "last (UTC)", "body")
    for s in found:
        when = s.cron if s.cron is not None else f"every {s.every:g}s"
        t.add_row(s.name, s.queue, when, s.timezone, str(s.priority), s.catch_up, f"{s.next_run_at:%Y-%m-%d %H:%M:%S}",
                  "-" if s.last_run_at is None else f"{s.last_run_at:%Y-%m-%d %H:%M:%S}", preview(s.body, 40))
    out.print(t)


@command(schedule_app, "remove")
def remove(name: NameArg, dsn: Dsn = None, table: TableOpt = DEFAULT_TABLE) -> None:
    """Remove a schedule; exit 1 if there was none."""
    with open_queue(dsn, table, pool_size=1) as q:
        removed = q.unschedule(name)
    out.print(f"removed schedule {name}" if removed else f"no schedule {name}", highlight=False)
    if not removed:
        raise typer.Exit(1)


@command(name="scheduler")
def scheduler(
    interval: Annotated[float, typer.Option(min=0.05, max=60, help="Seconds between polls.")] = 0.5,
    dsn: Dsn = None,
    table: TableOpt = DEFAULT_TABLE,
) -> None:
    """Push the messages of due schedule ticks until SIGTERM/SIGINT. Run as many as you like:
    each tick is pushed once."""
    from ..scheduler import Scheduler

    with open_queue(dsn, table, pool_size=2, long_lived=True) as q:
        q.schedules()  # a bad DSN or a missing schema: one red line, before ticking
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        Scheduler(q, interval=interval).run(stop)


def _json(s: Schedule) -> dict[str, Any]:
    return {
        "name": s.name, "queue": s.queue, "cron": s.cron, "every": s.every, "timezone": s.timezone,
        "priority": s.priority, "max_attempts": s.max_attempts, "catch_up": s.catch_up,
        "next_run_at": s.next_run_at.isoformat() + "Z",
        "last_run_at": None if s.last_run_at is None else s.last_run_at.isoformat() + "Z",
        "body": s.body.decode("utf-8", "replace"),
    }
