"""Commands on queues and the processes consuming them: stats, workers, pause, resume, recover."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Annotated, Any, Optional

import typer

from ..config import DEFAULT_TABLE
from ..queue import Queue
from .app import Dsn, JsonOpt, QueueArg, TableOpt, WaitOpt, command, open_queue
from .render import Snapshot, out, plural, print_json, stats_json, stats_view, workers_json, workers_table


@command()
def stats(
    queue: Annotated[Optional[str], typer.Argument(help="Only this queue.", show_default=False)] = None,
    watch: Annotated[
        Optional[float],
        typer.Option("--watch", "-w", min=0.1, help="Refresh every SECONDS until Ctrl-C.", show_default=False),
    ] = None,
    count: Annotated[
        Optional[int], typer.Option(min=1, help="With --watch: stop after COUNT refreshes.", show_default=False)
    ] = None,
    dsn: Dsn = None,
    wait: WaitOpt = None,
    table: TableOpt = DEFAULT_TABLE,
    as_json: JsonOpt = False,
) -> None:
    """Depth of every queue: ready, delayed, claimed, failed, processed, age of the oldest ready message.

    With --watch and --json, prints one JSON object per line per refresh.
    """
    with open_queue(dsn, table, wait=wait, pool_size=1) as q:
        if watch is None:
            if as_json:
                print_json(stats_json(_snapshot(q, queue)))
                return
            out.print(stats_view(_snapshot(q, queue)))
            return
        try:
            if as_json:
                for snapshot in _every(watch, count, lambda: stats_json(_snapshot(q, queue))):
                    sys.stdout.write(json.dumps(snapshot, default=str) + "\n")
                    sys.stdout.flush()
                return
            tables = _every(watch, count, lambda: stats_view(
                _snapshot(q, queue), f"every {watch:g}s, {datetime.now():%H:%M:%S}; Ctrl-C to stop"))
            if not out.is_terminal:  # a log or a pipe: one table per refresh
                for t in tables:
                    out.print(t)
                return
            from rich.live import Live  # only a terminal watching needs it

            with Live(console=out, auto_refresh=False) as live:
                for t in tables:
                    live.update(t, refresh=True)
        except KeyboardInterrupt:
            return


def _snapshot(q: Queue, queue: str | None) -> Snapshot:
    return Snapshot(q.stats(), queue, q.in_progress(queue), q.workers())


def _every(seconds: float, count: int | None, read: Callable[[], Any]) -> Iterator[Any]:
    done = 0
    while count is None or done < count:
        started = time.monotonic()
        yield read()
        done += 1
        if count is None or done < count:
            time.sleep(max(0.0, seconds - (time.monotonic() - started)))


@command()
def workers(
    dsn: Dsn = None,
    wait: WaitOpt = None,
    table: TableOpt = DEFAULT_TABLE,
    as_json: JsonOpt = False,
) -> None:
    """List the live Worker / consume processes: host, pid, queues, messages in hand, counts."""
    with open_queue(dsn, table, wait=wait, pool_size=1) as q:
        found = q.workers()
    if as_json:
        print_json([workers_json(w) for w in found])
        return
    out.print(workers_table(found))


@command()
def pause(
    queue: QueueArg,
    dsn: Dsn = None,
    wait: WaitOpt = None,
    table: TableOpt = DEFAULT_TABLE,
    as_json: JsonOpt = False,
) -> None:
    """Stop handing out messages of QUEUE to every consumer (pushes are still accepted)."""
    with open_queue(dsn, table, wait=wait, pool_size=1) as q:
        q.pause(queue)
    _paused_state(queue, True, as_json)


@command()
def resume(
    queue: QueueArg,
    dsn: Dsn = None,
    wait: WaitOpt = None,
    table: TableOpt = DEFAULT_TABLE,
    as_json: JsonOpt = False,
) -> None:
    """Hand out messages of a paused QUEUE again."""
    with open_queue(dsn, table, wait=wait, pool_size=1) as q:
        q.resume(queue)
    _paused_state(queue, False, as_json)


def _paused_state(queue: str, paused: bool, as_json: bool) -> None:
    if as_json:
        print_json({"queue": queue, "paused": paused})
    else:
        out.print(f"{queue}: {'paused' if paused else 'resumed'}", highlight=False)


@command()
def recover(
    dsn: Dsn = None,
    wait: WaitOpt = None,
    table: TableOpt = DEFAULT_TABLE,
    as_json: JsonOpt = False,
) -> None:
    """Put back claims whose consumer is gone; prints how many and why. Safe to run from cron."""
    with open_queue(dsn, table, wait=wait, pool_size=1) as q:
        r = q.recover()
    reasons = {
        "dead_owner": r.dead_owner,
        "before_restart": r.before_restart,
        "lease_expired": r.lease_expired,
    }
    if as_json:
        print_json({"recovered": r.total, **reasons, "sees_all_connections": r.sees_all_connections})
        return
    why = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in reasons.items())
    out.print(f"recovered {plural(r.total, 'message')} ({why})", highlight=False)
    if not r.sees_all_connections:
        out.print("[yellow]no PROCESS privilege: a dead consumer cannot be told from another user's live one, "
                  "so its claims come back only after their lease expires or the server restarts[/]")
