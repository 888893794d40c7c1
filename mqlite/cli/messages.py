"""Commands on the messages of one queue: push, pop, peek, purge, retry."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..config import DEFAULT_TABLE
from ..queue import Queue
from .app import Dsn, JsonOpt, QueueArg, TableOpt, UnknownQueue, UsageError, WaitOpt, command, duration, open_queue
from .render import message_json, messages_table, out, plural, print_json


@command()
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
    priority: Annotated[
        int, typer.Option(help="Lower is handed out first (-32768 to 32767); first in first out within one.")
    ] = 0,
    dsn: Dsn = None,
    wait: WaitOpt = None,
    table: TableOpt = DEFAULT_TABLE,
    as_json: JsonOpt = False,
) -> None:
    """Push one message (BODY, or stdin) or many (--file); prints the id(s)."""
    due = duration(delay, "--delay") if delay is not None else None
    if file is not None:
        if body is not None:
            raise UsageError("give BODY or --file, not both")
        if delay is not None or unique_key is not None:
            raise UsageError("--delay and --unique-key apply to one message, not to --file")
        raw = sys.stdin.buffer.read() if str(file) == "-" else _read_file(file)
        bodies = [line for line in raw.splitlines() if line.strip()]
        with open_queue(dsn, table, wait=wait, pool_size=1) as q:
            ids = q.push_many(queue, bodies, priority=priority)
        if as_json:
            print_json({"queue": queue, "ids": ids})
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
    with open_queue(dsn, table, wait=wait, pool_size=1) as q:
        new_id = q.push(queue, data, delay=due.total_seconds() if due is not None else None, unique_key=unique_key,
                        priority=priority)
    if as_json:
        print_json({"queue": queue, "id": new_id})
    else:
        out.print(new_id)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


@command()
def pop(
    queue: QueueArg,
    raw: Annotated[bool, typer.Option("--raw", help="Write the body's bytes as they are, without a newline.")] = False,
    dsn: Dsn = None,
    wait: WaitOpt = None,
    table: TableOpt = DEFAULT_TABLE,
    as_json: JsonOpt = False,
) -> None:
    """Take one message (at-most-once) and print its body; exit status 1 when the queue is empty."""
    with open_queue(dsn, table, wait=wait, pool_size=1) as q:
        message = q.pop(queue)
    if message is None:
        raise typer.Exit(1)
    if raw:
        sys.stdout.buffer.write(message.body)
        sys.stdout.buffer.flush()
    elif as_json:
        print_json({"id": message.id, "queue": message.queue, "body": message.body.decode("utf-8", "replace")})
    else:
        sys.stdout.write(message.body.decode("utf-8", "replace") + "\n")


@command()
def peek(
    queue: QueueArg,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000, help="How many messages.")] = 10,
    failed: Annotated[bool, typer.Option("--failed", help="Show failed messages instead of ready ones.")] = False,
    dsn: Dsn = None,
    wait: WaitOpt = None,
    table: TableOpt = DEFAULT_TABLE,
    as_json: JsonOpt = False,
) -> None:
    """Show the next messages of QUEUE (ready, delayed or claimed), or its failed ones, without taking them."""
    with open_queue(dsn, table, wait=wait, pool_size=1) as q:
        messages = q.peek(queue, limit, failed=failed)
    if as_json:
        print_json([message_json(m) for m in messages])
        return
    if not messages:
        out.print(f"{queue}: no {'failed' if failed else 'pending'} messages", highlight=False)
        return
    title = f"{queue}: {len(messages)} failed (oldest first)" if failed else f"{queue}: next {len(messages)} due"
    out.print(messages_table(messages, title))


@command()
def purge(
    queue: QueueArg,
    failed: Annotated[bool, typer.Option("--failed", help="Delete failed messages instead of ready ones.")] = False,
    older_than: Annotated[
        Optional[str],
        typer.Option(help="With --failed: only those that failed longer ago than this (7d, 12h).", show_default=False),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dsn: Dsn = None,
    wait: WaitOpt = None,
    table: TableOpt = DEFAULT_TABLE,
    as_json: JsonOpt = False,
) -> None:
    """Delete the ready (or failed) messages of QUEUE; prints how many went. Claimed messages are left alone."""
    age = duration(older_than, "--older-than") if older_than is not None else None
    if age is not None and not failed:
        raise UsageError("--older-than applies to failed messages: add --failed")
    what = "failed" if failed else "ready"
    with open_queue(dsn, table, wait=wait, pool_size=1) as q:
        if not yes:
            since = f" that failed more than {older_than} ago" if older_than else ""
            typer.confirm(f"Delete the {what} messages of queue {queue!r}{since} from {table}?", abort=True, err=True)
        n = q.purge_failed(queue, older_than=age) if failed else q.purge(queue)
    if as_json:
        print_json({"queue": queue, "purged": n, "what": what})
    else:
        out.print(f"purged {n} {what} message{'s' if n != 1 else ''} of {queue}", highlight=False)


@command()
def retry(
    queue: QueueArg,
    ids: Annotated[
        Optional[list[int]], typer.Option("--id", help="A failed message to retry; repeat for several.",
                                          show_default=False)
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Retry every failed message of QUEUE.")] = False,
    dsn: Dsn = None,
    wait: WaitOpt = None,
    table: TableOpt = DEFAULT_TABLE,
    as_json: JsonOpt = False,
) -> None:
    """Put failed messages of QUEUE back to ready (attempts start again)."""
    if bool(ids) == all_:
        raise UsageError("say which messages: --id N (repeatable) or --all")
    with open_queue(dsn, table, wait=wait, pool_size=1) as q:
        _known_queue(q, queue)
        n = q.retry_failed(queue, ids=None if all_ else ids)
    if as_json:
        print_json({"queue": queue, "retried": n})
    else:
        out.print(f"{plural(n, 'failed message')} of {queue} back to ready", highlight=False)


def _known_queue(q: Queue, queue: str) -> None:
    names = q.stats().queues
    if queue not in names:
        listed = ", ".join(sorted(names)[:10]) or "none"
        raise UnknownQueue(f"no message of queue {queue!r} in table {q.table} (queues there: {listed})")
