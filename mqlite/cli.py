"""The `mqlite` command: parse, call the library, print. The only module that imports typer.

Exit status, for every command: 0 done; 1 nothing there or not all done (`pop` on an empty queue,
`consume` with failed messages, `worker` past its stop timeout, a declined `purge`); 2 an error,
printed as one red line (bad DSN, server unreachable, missing schema, unknown queue, bad option).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .config import DEFAULT_TABLE
from .errors import MqliteError
from .message import Message
from .queue import Queue
from .worker import Worker, WorkerResult, command_handler

# Locals in tracebacks could show a DSN with its password: never print them.
app = typer.Typer(
    help="mqlite: a message queue in one MySQL/MariaDB table.\n\n"
    "Every command takes --dsn (default: $MQLITE_DSN); errors print one red line and exit 2.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode="markdown",
)
schema_app = typer.Typer(help="Create, upgrade and inspect the messages table.", no_args_is_help=True)
app.add_typer(schema_app, name="schema")

out = Console()
err = Console(stderr=True)

Dsn = Annotated[
    Optional[str],
    typer.Option("--dsn", envvar="MQLITE_DSN", show_envvar=True, help="mysql://user:pass@host:port/db"),
]
TableOpt = Annotated[str, typer.Option("--table", help="Messages table name.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
QueueArg = Annotated[str, typer.Argument(help="Queue name.", show_default=False)]

F = TypeVar("F", bound=Callable[..., Any])

_PREVIEW = 48  # characters of a body shown in a table
_ERROR_PREVIEW = 60  # characters of a last error shown in a table


class UsageError(MqliteError):
    """The command line asks for something that cannot be done as given."""


class UnknownQueue(MqliteError):
    """No message of this queue is in the table."""


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
    return _seconds((datetime.now() - ts).total_seconds())


def _due(ts: datetime | None) -> str:
    if ts is None:
        return "-"
    wait = (ts - datetime.now()).total_seconds()
    return "now" if wait <= 0 else f"in {_seconds(wait)}"


def _seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


def _print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, default=str, indent=2) + "\n")


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def _duration(text: str, option: str) -> timedelta:
    """`90`, `90s`, `5m`, `1.5h`, `7d`, `2w` as a timedelta; UsageError otherwise."""
    m = _DURATION_RE.match(text)
    if not m:
        raise UsageError(f"{option} {text!r} is not a duration (examples: 30s, 5m, 2h, 7d)")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def _known_queue(q: Queue, queue: str) -> None:
    names = q.stats().queues
    if queue not in names:
        listed = ", ".join(sorted(names)[:10]) or "none"
        raise UnknownQueue(f"no message of queue {queue!r} in table {q.table} (queues there: {listed})")


def _preview(data: bytes | str | None, width: int) -> str:
    """One line: non-printable characters escaped, cut to `width` with an ellipsis."""
    if data is None:
        return ""
    text = data[: width * 4].decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    more = len(text) > width or (isinstance(data, bytes) and len(data) > width * 4)
    return text[: width - 1] + "…" if more else text


@contextmanager
def _logging_to_stderr(level: int) -> Iterator[None]:
    """Send the library's log lines to this command's stderr while it runs."""
    logger = logging.getLogger("mqlite")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
        handler.flush()


# -- setup ------------------------------------------------------------------------------------


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


@schema_app.command("status")
@handles_errors
def schema_status(dsn: Dsn = None, table: TableOpt = DEFAULT_TABLE, as_json: JsonOpt = False) -> None:
    """Show the schema version of the messages table and the migration files not applied yet."""
    with _queue(dsn, table, pool_size=1) as q:
        status = q.schema_status()
    if as_json:
        _print_json({
            "table": table,
            "version": status.version,
            "applied": [{"version": v, "name": n, "applied_at": at} for v, n, at in status.applied],
            "pending": [f"{m.version:03d}_{m.name}" for m in status.pending],
        })
        return
    if status.applied:
        v, name, at = status.applied[-1]
        out.print(f"{table}: schema version {v} ({v:03d}_{name}, applied {at:%Y-%m-%d %H:%M:%S})")
    else:
        out.print(f"{table}: no schema applied yet")
    if status.pending:
        names = ", ".join(f"{m.version:03d}_{m.name}" for m in status.pending)
        out.print(f"pending: {names} (run `mqlite schema apply`)", highlight=False)
    else:
        out.print("pending: none")


# -- messages ---------------------------------------------------------------------------------


@app.command()
@handles_errors
def push(
    queue: QueueArg,
    body: Annotated[
        Optional[str], typer.Argument(help="Message body; `-` or omitted: all of stdin, as bytes.", show_default=False)
    ] = None,
    file: Annotated[
        Optional[Path],
        typer.Option("--file", "-f", help="Push each non-empty line of FILE (`-`: stdin) as one message, "
                     "all in one transaction.", show_default=False),
    ] = None,
    delay: Annotated[
        Optional[str], typer.Option(help="Hold the message back this long: 30s, 5m, 2h, 1d.", show_default=False)
    ] = None,
    unique_key: Annotated[
        Optional[str],
        typer.Option(help="Refuse (exit 2) a second message with this key while the first is in the table.",
                     show_default=False),
    ] = None,
    dsn: Dsn = None,
    table: TableOpt = DEFAULT_TABLE,
    as_json: JsonOpt = False,
) -> None:
    """Push one message (BODY, or stdin) or many (--file); prints the id(s)."""
    wait = _duration(delay, "--delay") if delay is not None else None
    if file is not None:
        if body is not None:
            raise UsageError("give BODY or --file, not both")
        if delay is not None or unique_key is not None:
            raise UsageError("--delay and --unique-key apply to one message, not to --file")
        raw = sys.stdin.buffer.read() if str(file) == "-" else _read_file(file)
        bodies = [line for line in raw.splitlines() if line.strip()]
        with _queue(dsn, table, pool_size=1) as q:
            ids = q.push_many(queue, bodies)
        if as_json:
            _print_json({"queue": queue, "ids": ids})
        elif ids:
            out.print(f"pushed {len(ids)} messages to {queue} (ids {ids[0]}–{ids[-1]})", highlight=False)
        else:
            out.print(f"nothing to push: {file} has no non-empty line", highlight=False)
        return
    if body is None or body == "-":
        if body is None and sys.stdin.isatty():
            raise UsageError("give BODY, `-` to read stdin, or --file")
        data: bytes | str = sys.stdin.buffer.read()
    else:
        data = body
    with _queue(dsn, table, pool_size=1) as q:
        new_id = q.push(queue, data, delay=wait.total_seconds() if wait is not None else None, unique_key=unique_key)
    if as_json:
        _print_json({"queue": queue, "id": new_id})
    else:
        out.print(new_id)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


@app.command()
@handles_errors
def pop(
    queue: QueueArg,
    raw: Annotated[bool, typer.Option("--raw", help="Write the body's bytes as they are, without a newline.")] = False,
    dsn: Dsn = None,
    table: TableOpt = DEFAULT_TABLE,
    as_json: JsonOpt = False,
) -> None:
    """Take one message (at-most-once) and print its body; exit status 1 when the queue is empty."""
    with _queue(dsn, table, pool_size=1) as q:
        message = q.pop(queue)
    if message is None:
        raise typer.Exit(1)
    if raw:
        sys.stdout.buffer.write(message.body)
        sys.stdout.buffer.flush()
    elif as_json:
        _print_json({"id": message.id, "queue": message.queue, "body": message.body.decode("utf-8", "replace")})
    else:
        sys.stdout.write(message.body.decode("utf-8", "replace") + "\n")


# -- inspecting -------------------------------------------------------------------------------


@app.command()
@handles_errors
def peek(
    queue: QueueArg,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000, help="How many messages.")] = 10,
    failed: Annotated[bool, typer.Option("--failed", help="Show failed messages instead of ready ones.")] = False,
    dsn: Dsn = None,
    table: TableOpt = DEFAULT_TABLE,
    as_json: JsonOpt = False,
) -> None:
    """Show the next messages of QUEUE (ready, delayed or claimed), or its failed ones, without taking them."""
    with _queue(dsn, table, pool_size=1) as q:
        messages = q.peek(queue, limit, failed=failed)
    if as_json:
        _print_json([_message_json(m) for m in messages])
        return
    if not messages:
        out.print(f"{queue}: no {'failed' if failed else 'pending'} messages", highlight=False)
        return
    # Not failed means waiting, delayed (a backoff, a delay) or in a consumer's hands: "due" and
    # "owner" tell which.
    title = f"{queue}: {len(messages)} failed (oldest first)" if failed else f"{queue}: next {len(messages)} due"
    t = Table("id", "age", "due", "attempts", "owner", "last error", "body", title=title)
    for m in messages:
        t.add_row(
            str(m.id), _age(m.created_at), _due(m.available_at), str(m.attempts), str(m.owner or "-"),
            Text(_preview(m.last_error, _ERROR_PREVIEW), style="red"),
            Text(_preview(m.body, _PREVIEW)),
        )
    out.print(t)


def _message_json(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "queue": m.queue,
        "created_at": m.created_at,
        "attempts": m.attempts,
        "owner": m.owner,
        "claimed_at": m.claimed_at,
        "available_at": m.available_at,
        "failed_at": m.failed_at,
        "last_error": m.last_error,
        "cursor": m.cursor,
        "progress": m.progress,
        "body": m.body.decode("utf-8", "replace"),
    }


_STAT_FIELDS = ("ready", "delayed", "claimed", "failed", "processed", "failed_total")


def _stats_rows(q: Queue, queue: str | None) -> tuple[dict[str, dict[str, Any]], bool]:
    s = q.stats()
    picked = {queue: s.queues.get(queue)} if queue is not None else dict(s.queues)
    rows = {
        name: {
            **{f: (getattr(v, f) if v is not None else 0) for f in _STAT_FIELDS},
            "oldest_ready": v.oldest_ready if v is not None else None,
            "oldest_age": v.oldest_age if v is not None else None,
            "paused": v.paused if v is not None else False,
        }
        for name, v in picked.items()
    }
    return rows, s.sees_all_connections


def _stats_table(rows: dict[str, dict[str, Any]], sees_all: bool, title: str | None = None) -> Table:
    t = Table("queue", "ready", "delayed", "claimed", "failed", "processed", "oldest ready", title=title,
              caption=None if sees_all else "no PROCESS privilege: recovery cannot see other sessions")
    for name, r in rows.items():
        label = f"{name} [yellow](paused)[/]" if r["paused"] else name
        t.add_row(label, *(f"{r[f]:,}" for f in _STAT_FIELDS[:5]), _seconds(r["oldest_age"]))
    return t


@app.command()
@handles_errors
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
    table: TableOpt = DEFAULT_TABLE,
    as_json: JsonOpt = False,
) -> None:
    """Depth of every queue: ready, delayed, claimed, failed, processed, age of the oldest ready message.

    With --watch and --json, prints one JSON object per line per refresh.
    """
    with _queue(dsn, table, pool_size=1) as q:
        if watch is None:
            if as_json:
                _print_json(_stats_json(q, queue))
                return
            out.print(_stats_view(q, queue))
            return
        try:
            if as_json:
                for snapshot in _every(watch, count, lambda: _stats_json(q, queue)):
                    sys.stdout.write(json.dumps(snapshot, default=str) + "\n")
                    sys.stdout.flush()
                return
            tables = _every(watch, count, lambda: _stats_view(
                q, queue, f"every {watch:g}s, {datetime.now():%H:%M:%S}; Ctrl-C to stop"))
            if not out.is_terminal:  # a log or a pipe: one table per refresh
                for t in tables:
                    out.print(t)
                return
            with Live(console=out, auto_refresh=False) as live:
                for t in tables:
                    live.update(t, refresh=True)
        except KeyboardInterrupt:
            return


def _stats_json(q: Queue, queue: str | None) -> dict[str, Any]:
    rows, sees_all = _stats_rows(q, queue)
    return {
        "queues": rows,
        "sees_all_connections": sees_all,
        "in_progress": [_message_json(m) for m in q.in_progress(queue)],
        "workers": [dataclasses.asdict(w) for w in q.workers()],
    }


def _stats_view(q: Queue, queue: str | None, title: str | None = None) -> Group:
    """The queues table, then (when there are any) messages in progress and live workers."""
    rows, sees_all = _stats_rows(q, queue)
    parts: list[Any] = [_stats_table(rows, sees_all, title)]
    busy = [m for m in q.in_progress(queue) if m.progress is not None or m.cursor is not None]
    if busy:
        parts.append(_progress_table(busy))
    found = q.workers()
    if found:
        parts.append(_workers_table(found))
    return Group(*parts)


def _every(seconds: float, count: int | None, read: Callable[[], Any]) -> Iterator[Any]:
    done = 0
    while count is None or done < count:
        started = time.monotonic()
        yield read()
        done += 1
        if count is None or done < count:
            time.sleep(max(0.0, seconds - (time.monotonic() - started)))


# -- maintenance ------------------------------------------------------------------------------


@app.command()
@handles_errors
def purge(
    queue: QueueArg,
    failed: Annotated[bool, typer.Option("--failed", help="Delete failed messages instead of ready ones.")] = False,
    older_than: Annotated[
        Optional[str],
        typer.Option(help="With --failed: only those that failed longer ago than this (7d, 12h).", show_default=False),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dsn: Dsn = None,
    table: TableOpt = DEFAULT_TABLE,
    as_json: JsonOpt = False,
) -> None:
    """Delete the ready (or failed) messages of QUEUE; prints how many went. Claimed messages are left alone."""
    age = _duration(older_than, "--older-than") if older_than is not None else None
    if age is not None and not failed:
        raise UsageError("--older-than applies to failed messages: add --failed")
    what = "failed" if failed else "ready"
    with _queue(dsn, table, pool_size=1) as q:
        if not yes:
            since = f" that failed more than {older_than} ago" if older_than else ""
            typer.confirm(f"Delete the {what} messages of queue {queue!r}{since} from {table}?", abort=True, err=True)
        n = q.purge_failed(queue, older_than=age) if failed else q.purge(queue)
    if as_json:
        _print_json({"queue": queue, "purged": n, "what": what})
    else:
        out.print(f"purged {n} {what} message{'s' if n != 1 else ''} of {queue}", highlight=False)


@app.command()
@handles_errors
def retry(
    queue: QueueArg,
    ids: Annotated[
        Optional[list[int]], typer.Option("--id", help="A failed message to retry; repeat for several.",
                                          show_default=False)
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Retry every failed message of QUEUE.")] = False,
    dsn: Dsn = None,
    table: TableOpt = DEFAULT_TABLE,
    as_json: JsonOpt = False,
) -> None:
    """Put failed messages of QUEUE back to ready (attempts start again)."""
    if bool(ids) == all_:
        raise UsageError("say which messages: --id N (repeatable) or --all")
    with _queue(dsn, table, pool_size=1) as q:
        _known_queue(q, queue)
        n = q.retry_failed(queue, ids=None if all_ else ids)
    if as_json:
        _print_json({"queue": queue, "retried": n})
    else:
        out.print(f"{n} failed message{'s' if n != 1 else ''} of {queue} back to ready", highlight=False)


@app.command()
@handles_errors
def workers(dsn: Dsn = None, table: TableOpt = DEFAULT_TABLE, as_json: JsonOpt = False) -> None:
    """List the live Worker / consume processes: host, pid, queues, messages in hand, counts."""
    with _queue(dsn, table, pool_size=1) as q:
        found = q.workers()
    if as_json:
        _print_json([dataclasses.asdict(w) for w in found])
        return
    out.print(_workers_table(found))


def _workers_table(found: list[Any]) -> Table:
    t = Table("id", "host", "pid", "queues", "up", "last beat", "in hand", "processed", "failed",
              title=f"{len(found)} worker{'s' if len(found) != 1 else ''}")
    for w in found:
        t.add_row(str(w.id), w.host, str(w.pid), ",".join(w.queues), _age(w.started_at), _seconds(w.silent_for),
                  ",".join(map(str, w.current_messages)) or "-", f"{w.processed:,}", f"{w.failed:,}")
    return t


def _progress_table(messages: list[Message]) -> Table:
    t = Table("id", "queue", "claimed", "owner", "progress", "cursor", title="in progress")
    for m in messages:
        done = "-" if m.progress is None else f"{m.progress:.0%}" if 0 <= m.progress <= 1 else f"{m.progress:g}"
        t.add_row(str(m.id), m.queue, _age(m.claimed_at), str(m.owner), done, _preview(m.cursor, 24))
    return t


@app.command()
@handles_errors
def pause(queue: QueueArg, dsn: Dsn = None, table: TableOpt = DEFAULT_TABLE, as_json: JsonOpt = False) -> None:
    """Stop handing out messages of QUEUE to every consumer (pushes are still accepted)."""
    with _queue(dsn, table, pool_size=1) as q:
        q.pause(queue)
    _paused_state(queue, True, as_json)


@app.command()
@handles_errors
def resume(queue: QueueArg, dsn: Dsn = None, table: TableOpt = DEFAULT_TABLE, as_json: JsonOpt = False) -> None:
    """Hand out messages of a paused QUEUE again."""
    with _queue(dsn, table, pool_size=1) as q:
        q.resume(queue)
    _paused_state(queue, False, as_json)


def _paused_state(queue: str, paused: bool, as_json: bool) -> None:
    if as_json:
        _print_json({"queue": queue, "paused": paused})
    else:
        out.print(f"{queue}: {'paused' if paused else 'resumed'}", highlight=False)


@app.command()
@handles_errors
def recover(dsn: Dsn = None, table: TableOpt = DEFAULT_TABLE, as_json: JsonOpt = False) -> None:
    """Put back claims whose consumer is gone; prints how many and why. Safe to run from cron."""
    with _queue(dsn, table, pool_size=1) as q:
        r = q.recover()
    reasons = {
        "dead_owner": r.dead_owner,
        "before_restart": r.before_restart,
        "lease_expired": r.lease_expired,
    }
    if as_json:
        _print_json({"recovered": r.total, **reasons, "sees_all_connections": r.sees_all_connections})
        return
    why = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in reasons.items())
    out.print(f"recovered {r.total} message{'s' if r.total != 1 else ''} ({why})", highlight=False)
    if not r.sees_all_connections:
        out.print("[yellow]no PROCESS privilege: a dead consumer cannot be told from another user's live one, "
                  "so its claims come back only after their lease expires or the server restarts[/]")


# -- consuming --------------------------------------------------------------------------------


@app.command()
@handles_errors
def consume(
    queue: QueueArg,
    command: Annotated[
        str, typer.Option("--exec", "-e", help="Shell command run for each message (see above).", show_default=False)
    ],
    max_messages: Annotated[
        Optional[int], typer.Option(min=1, help="Stop after this many messages.", show_default=False)
    ] = None,
    max_seconds: Annotated[
        Optional[float], typer.Option(min=0, help="Take no new message after this many seconds.", show_default=False)
    ] = None,
    dsn: Dsn = None,
    table: TableOpt = DEFAULT_TABLE,
    as_json: JsonOpt = False,
) -> None:
    """For cron: claim messages one at a time and run a command for each, until the queue is empty.

    The command gets the body on stdin and MQLITE_MESSAGE_ID, MQLITE_QUEUE and MQLITE_ATTEMPT in
    its environment. Exit 0 acknowledges the message; any other status records a failure with
    the command's stderr tail (retried later). Each message is tried at most once per run.
    Overlapping runs are safe: they claim different messages.

    Exit status: 0 every message succeeded (or none was ready); 1 some failed; 2 an error.
    SIGTERM/Ctrl-C: finish the message in hand, then stop.
    """
    with _queue(dsn, table, pool_size=3) as q:
        q.size(queue)  # a bad DSN, name or schema: one red line, before any logging starts
        with _logging_to_stderr(logging.WARNING):
            result = Worker(q, [queue], command_handler(command), until_empty=True, max_messages=max_messages,
                            max_seconds=max_seconds, stop_on_error=True).run()
    _summary(queue, result, as_json)
    if result.failed or not result.clean:
        raise typer.Exit(1)


def _summary(what: str, result: WorkerResult, as_json: bool) -> None:
    if as_json:
        _print_json({"queue": what, "processed": result.processed, "failed": result.failed,
                     "abandoned": result.abandoned, "stopped": result.reason})
        return
    why = {"empty": "queue empty", "max_messages": "--max-messages reached", "max_seconds": "--max-seconds reached",
           "signal": "signal", "stopped": "stopped", "crashed": "crashed", "error": "error"}.get(result.reason, result.reason)
    line = f"{what}: {result.processed} acknowledged, {result.failed} failed ({why})"
    if result.abandoned:
        line += f", {result.abandoned} left claimed"
    out.print(line, highlight=False)


@app.command()
@handles_errors
def worker(
    queues: Annotated[list[str], typer.Argument(help="Queues to consume, highest priority first.", show_default=False)],
    handler: Annotated[
        str, typer.Option("--handler", "-H", help="module:function called with each Message (the current "
                          "directory is importable).", show_default=False)
    ],
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, max=256, help="Handler threads.")] = 1,
    idle_max: Annotated[float, typer.Option(min=0.01, help="Longest wait between polls of empty queues (s).")] = 1.0,
    stop_timeout: Annotated[
        float, typer.Option(min=0, help="After SIGTERM, how long messages in hand may take to finish (s).")
    ] = 30.0,
    until_empty: Annotated[bool, typer.Option("--until-empty", help="Exit once every queue is empty.")] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    dsn: Dsn = None,
    table: TableOpt = DEFAULT_TABLE,
) -> None:
    """Run a long-lived worker (systemd, supervisord, docker): call a Python function for each message.

    The function returning acknowledges the message; raising records a failure (logged on one
    line). When the queues are empty it polls every 50 ms, backing off to --idle-max.
    SIGTERM/SIGINT: finish the messages in hand, acknowledge them, exit 0 (1 if --stop-timeout ran
    out); a second signal exits at once and its claims come back by recovery.
    """
    level = logging.getLevelName(log_level.upper())
    if not isinstance(level, int):
        raise UsageError(f"--log-level {log_level!r} is not one of debug, info, warning, error")
    function = _load_handler(handler)
    with _queue(dsn, table, pool_size=concurrency + 2) as q:
        for name in queues:
            q.size(name)  # a bad DSN, name or schema: one red line, before any logging starts
        with _logging_to_stderr(level):
            result = Worker(q, queues, function, concurrency=concurrency, idle_min=min(0.05, idle_max),
                            idle_max=idle_max, stop_timeout=stop_timeout, until_empty=until_empty).run()
    if not result.clean:
        raise typer.Exit(1)


def _load_handler(spec: str) -> Callable[[Message], Any]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(f"--handler {spec!r} must look like module:function")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except Exception as exc:
        raise UsageError(f"cannot load handler {spec!r}: {type(exc).__name__}: {exc}") from None
    if not callable(target):
        raise UsageError(f"handler {spec!r} is not callable")
    return target


# -- benchmark --------------------------------------------------------------------------------


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
    redis_url: Annotated[
        Optional[str], typer.Option(help="Redis for the RQ peer (default: the local one, port 6379).")
    ] = None,
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
    # The harness and the throwaway server load only for this command (the others start faster).
    from . import bench as bench_mod
    from .bench import plot as bench_plot
    from .testing import dsn_or_throwaway

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
        processes=processes, compare=compare, sweep=counts, batch=batch, backlog=backlog,
        redis_url=redis_url or bench_mod.DEFAULT_REDIS_URL,
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


@app.command()
@handles_errors
def web(
    host: Annotated[str, typer.Option(help="Address to listen on; anything but loopback needs a token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    token: Annotated[
        Optional[str],
        typer.Option(envvar="MQLITE_WEB_TOKEN", show_envvar=True, show_default=False,
                     help="Bearer token every write route needs (prefer the environment variable)."),
    ] = None,
    max_body: Annotated[int, typer.Option(min=1, help="Largest message body accepted, in bytes.")] = 1 << 20,
    log_level: Annotated[
        str, typer.Option(help="debug, info (one line per request), warning or error.")
    ] = "info",
    dsn: Dsn = None,
    table: TableOpt = DEFAULT_TABLE,
) -> None:
    """Serve the HTTP API, the status page (/) and Prometheus metrics (/metrics).

    Needs the web extra: `pip install 'mqlite[web]'`.
    """
    from . import web as web_extra  # imports no web package until asked

    lacking = web_extra.missing()
    if lacking:
        err.print(f"mqlite: web needs the web extra ({lacking} is not installed): {web_extra.EXTRA_HINT}",
                  markup=False, highlight=False, soft_wrap=True, style="red")
        raise typer.Exit(2)
    if log_level not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter("must be debug, info, warning or error", param_hint="--log-level")
    web_extra.serve(dsn, host=host, port=port, token=token, table=table, max_body=max_body, log_level=log_level)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
