"""Long-running commands: consume (cron), worker (daemons), web (the HTTP API).

Each imports what it runs (the Worker, the web app) inside its function, so `mqlite push` from
cron loads none of it.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Optional

import typer

from ..config import DEFAULT_TABLE
from ..message import Message
from ..web import DEFAULT_MAX_BODY
from .app import Dsn, JsonOpt, QueueArg, TableOpt, UsageError, WaitOpt, command, open_queue
from .render import err, worker_summary


@command()
def consume(
    queue: QueueArg,
    command_: Annotated[
        str, typer.Option("--exec", "-e", help="Shell command run for each message (see above).", show_default=False)
    ],
    max_messages: Annotated[
        Optional[int], typer.Option(min=1, help="Stop after this many messages.", show_default=False)
    ] = None,
    max_seconds: Annotated[
        Optional[float], typer.Option(min=0, help="Take no new message after this many seconds.", show_default=False)
    ] = None,
    dsn: Dsn = None,
    wait: WaitOpt = None,
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
    from ..command import command_handler
    from ..worker import Worker

    with open_queue(dsn, table, wait=wait, pool_size=3) as q:
        q.size(queue)  # a bad DSN, name or schema: one red line, before any logging starts
        with _logging_to_stderr(logging.WARNING):
            result = Worker(q, [queue], command_handler(command_), until_empty=True, max_messages=max_messages,
                            max_seconds=max_seconds, stop_on_error=True).run()
    worker_summary(queue, result, as_json)
    if result.failed or not result.clean:
        raise typer.Exit(1)


@command()
def worker(
    queues: Annotated[list[str], typer.Argument(help="Queues to consume, highest priority first.", show_default=False)],
    handler: Annotated[
        str, typer.Option("--handler", "-H", help="module:function called with each Message (the current "
                          "directory is importable).", show_default=False)
    ],
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, max=256,
                          help="Handler threads (asyncio tasks for an async def handler).")
    ] = 1,
    idle_max: Annotated[float, typer.Option(min=0.01, help="Longest wait between polls of empty queues (s).")] = 1.0,
    stop_timeout: Annotated[
        float, typer.Option(min=0, help="After SIGTERM, how long messages in hand may take to finish (s).")
    ] = 30.0,
    until_empty: Annotated[bool, typer.Option("--until-empty", help="Exit once every queue is empty.")] = False,
    prefetch: Annotated[
        int, typer.Option(min=1, max=1000, help="Messages each thread claims at once and handles in order; those "
                          "handled are acknowledged together (sync handlers).")
    ] = 1,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    with_scheduler: Annotated[
        bool, typer.Option("--scheduler", help="Also tick the recurring schedules (see `mqlite schedule`).")
    ] = False,
    dsn: Dsn = None,
    table: TableOpt = DEFAULT_TABLE,
) -> None:
    """Run a long-lived worker (systemd, supervisord, docker): call a Python function for each message.

    The function returning acknowledges the message; raising records a failure (logged on one
    line). An `async def` function runs on an event loop (mqlite.aio.AsyncWorker), --concurrency
    handlers at once. When the queues are empty it sleeps on their doorbell (a push from any process
    wakes it in milliseconds) and polls every 50 ms, backing off to --idle-max.
    SIGTERM/SIGINT: finish the messages in hand, acknowledge them, exit 0 (1 if --stop-timeout ran
    out); a second signal exits at once and its claims come back by recovery.
    """
    from ..aio.worker import is_async_handler

    level = logging.getLevelName(log_level.upper())
    if not isinstance(level, int):
        raise UsageError(f"--log-level {log_level!r} is not one of debug, info, warning, error")
    function = _load_handler(handler)
    options: dict[str, Any] = dict(concurrency=concurrency, idle_min=min(0.05, idle_max), idle_max=idle_max,
                                   stop_timeout=stop_timeout, until_empty=until_empty)
    with open_queue(dsn, table, pool_size=concurrency + 2, long_lived=True) as q:
        for name in queues:
            q.size(name)  # a bad DSN, name or schema: one red line, before any logging starts
        with _logging_to_stderr(level):
            if is_async_handler(function):
                import asyncio

                from .. import scheduler

                stop = threading.Event()
                ticking = scheduler.start(q, stop) if with_scheduler else None
                try:
                    result = asyncio.run(_run_async(q, queues, function, options))
                finally:
                    stop.set()
                    if ticking is not None:
                        ticking.join(5)
            else:
                from ..worker import Worker

                result = Worker(q, queues, function, prefetch=prefetch, scheduler=with_scheduler, **options).run()
    if not result.clean:
        raise typer.Exit(1)


async def _run_async(q: Any, queues: list[str], function: Any, options: dict[str, Any]) -> Any:
    from ..aio import AsyncQueue
    from ..aio.worker import AsyncWorker

    async with AsyncQueue(queue=q) as aq:
        return await AsyncWorker(aq, queues, function, **options).run()


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
    return target  # type: ignore[no-any-return]


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


@command()
def web(
    host: Annotated[str, typer.Option(help="Address to listen on; anything but loopback needs a token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    token: Annotated[
        Optional[str],
        typer.Option(envvar="MQLITE_WEB_TOKEN", show_envvar=True, show_default=False,
                     help="Bearer token every write route needs (prefer the environment variable)."),
    ] = None,
    max_body: Annotated[int, typer.Option(min=1, help="Largest message body accepted, in bytes.")] = DEFAULT_MAX_BODY,
    log_level: Annotated[
        str, typer.Option(help="debug, info (one line per request), warning or error.")
    ] = "info",
    dsn: Dsn = None,
    table: TableOpt = DEFAULT_TABLE,
) -> None:
    """Serve the HTTP API, the status page (/) and Prometheus metrics (/metrics).

    Needs the web extra: `pip install 'mqlite[web]'`.
    """
    from .. import web as web_extra  # imports no web package until asked

    lacking = web_extra.missing()
    if lacking:
        err.print(f"mqlite: web needs the web extra ({lacking} is not installed): {web_extra.EXTRA_HINT}",
                  markup=False, highlight=False, soft_wrap=True, style="red")
        raise typer.Exit(2)
    if log_level not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter("must be debug, info, warning or error", param_hint="--log-level")
    web_extra.serve(dsn, host=host, port=port, token=token, table=table, max_body=max_body, log_level=log_level)
