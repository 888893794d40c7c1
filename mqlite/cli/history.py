"""Commands on what became of messages: cancel, history (enable, disable, list), replay."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from ..config import DEFAULT_TABLE
from ..history import HistoryEntry
from .app import Dsn, JsonOpt, QueueArg, TableOpt, UsageError, WaitOpt, command, duration, open_queue
from .render import ERROR_PREVIEW, PREVIEW, out, plural, preview, print_json, seconds

OutcomeOpt = Annotated[
    Optional[str],
    typer.Option("--outcome", help="acked, popped, failed, cancelled, cancelled_late, purged, or succeeded "
                 "(acked and popped).", show_default=False),
]


@command()
def cancel(
    queue: QueueArg,
    message_id: Annotated[int, typer.Argument(metavar="ID", help="The message's id.", show_default=False)],
    dsn: Dsn = None,
    wait: WaitOpt = None,
    table: TableOpt = DEFAULT_TABLE,
    as_json: JsonOpt = False,
) -> None:
    """Cancel a message: removed if it waits (ready, delayed, failed); if it runs, marked cancelling:
    its handler's next checkpoint/touch/extend raises Cancelled (or its ack records cancelled_late)."""
    with open_queue(dsn, table, wait=wait, pool_size=1) as q:
        what = q.cancel(queue, message_id)
    if as_json:
        print_json({"queue": queue, "id": message_id, "result": what})
    else:
        out.print(f"message {message_id} of {queue}: {what}", highlight=False)


@command()
def history(
    action: Annotated[
        str, typer.Argument(metavar="ACTION|QUEUE", help="enable, disable or show, then QUEUE; or QUEUE alone "
                            "(show).", show_default=False)
    ],
    queue: Annotated[Optional[str], typer.Argument(metavar="[QUEUE]", help="The queue, after an action.",
                                                   show_default=False)] = None,
    days: Annotated[int, typer.Option(min=1, max=65535, help="enable: days rows are kept.")] = 7,
    outcome: OutcomeOpt = None,
    since: Annotated[
        Optional[str], typer.Option(help="Only messages finished this long ago or later: 30m, 2h, 7d.",
                                    show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="Rows shown at most, newest first.")] = 50,
    dsn: Dsn = None,
    wait: WaitOpt = None,
    table: TableOpt = DEFAULT_TABLE,
    as_json: JsonOpt = False,
) -> None:
    """Keep (enable --days N), stop keeping (disable) or show a queue's history of finished messages."""
    if queue is None:
        if action in ("enable", "disable"):
            raise UsageError(f"give the queue: mqlite history {action} QUEUE (a queue named {action!r}: "
                             f"mqlite history show {action})")
        action, queue = "show", action
    elif action not in ("enable", "disable", "show"):
        raise UsageError(f"unknown action {action!r}: enable, disable or show (or QUEUE alone)")
    with open_queue(dsn, table, wait=wait, pool_size=1) as q:
        if action in ("enable", "disable"):
            q.keep_history(queue, days if action == "enable" else None)
            state = f"kept {plural(days, 'day')}" if action == "enable" else "off"
            if as_json:
                print_json({"queue": queue, "history_days": days if action == "enable" else None})
            else:
                out.print(f"history of {queue}: {state}", highlight=False)
            return
        back = None if since is None else duration(since, "--since")
        found = q.history(queue, outcome=outcome, since=back, limit=limit)
    if as_json:
        print_json({"queue": queue, "history": [entry_json(e) for e in found]})
    else:
        out.print(history_table(found, f"history of {queue}: {plural(len(found), 'message')}, newest first"))


@command()
def replay(
    queue: QueueArg,
    since: Annotated[str, typer.Option(help="Messages finished this long ago or later: 30m, 1h, 7d.",
                                       show_default=False)],
    outcome: Annotated[
        str,
        typer.Option("--outcome", help="failed, succeeded (acked and popped), cancelled, purged, one outcome, "
                     "or all."),
    ] = "failed",
    to: Annotated[Optional[str], typer.Option("--to", help="Push the copies onto this queue instead.",
                                              show_default=False)] = None,
    dsn: Dsn = None,
    wait: WaitOpt = None,
    table: TableOpt = DEFAULT_TABLE,
    as_json: JsonOpt = False,
) -> None:
    """Push copies of QUEUE's finished messages (from its history) back, oldest first: the failed ones
    unless --outcome says otherwise."""
    back = duration(since, "--since")
    with open_queue(dsn, table, wait=wait, pool_size=1) as q:
        ids = q.replay(queue, since=back, outcome=None if outcome == "all" else outcome, to=to)
    target = to or queue
    if as_json:
        print_json({"queue": target, "ids": ids})
    else:
        out.print(f"replayed {plural(len(ids), 'message')} onto {target}", highlight=False)


def entry_json(e: HistoryEntry) -> dict[str, Any]:
    return {
        "id": e.id, "queue": e.queue, "outcome": e.outcome, "attempts": e.attempts, "created_at": e.created_at,
        "first_claimed_at": e.first_claimed_at, "finished_at": e.finished_at, "duration": e.duration,
        "last_error": e.last_error, "worker": e.worker, "body": e.body.decode("utf-8", "replace"),
    }


def history_table(entries: list[HistoryEntry], title: str) -> Table:
    t = Table("id", "outcome", "finished", "attempts", "took", "worker", "last error", "body", title=title)
    for e in entries:
        t.add_row(
            str(e.id), Text(e.outcome, style="red" if e.outcome == "failed" else ""),
            f"{e.finished_at:%Y-%m-%d %H:%M:%S}", str(e.attempts), seconds(e.duration), e.worker or "-",
            Text(preview(e.last_error, ERROR_PREVIEW), style="red"), Text(preview(e.body, PREVIEW)),
        )
    return t
