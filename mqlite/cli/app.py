"""The Typer app, the options every command shares, and how a library error ends a command."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any, Optional, TypeVar

import typer

from ..config import DEFAULT_TABLE
from ..errors import MqliteError
from ..queue import Queue
from .render import err

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

Dsn = Annotated[
    Optional[str],
    typer.Option("--dsn", envvar="MQLITE_DSN", show_envvar=True, help="mysql://user:pass@host:port/db"),
]
TableOpt = Annotated[str, typer.Option("--table", help="Messages table name.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
QueueArg = Annotated[str, typer.Argument(help="Queue name.", show_default=False)]
WaitOpt = Annotated[
    Optional[float],
    typer.Option("--wait", min=0, metavar="SECONDS", show_default=False,
                 help="Retry a refused first connection for this long (default: about a second, then say so)."),
]

# A command that a person or cron waits on says within about this long that its first connection
# is refused, unless --wait asks for longer. Long-lived ones (worker, web) retry as the library does.
FIRST_CONNECT_WAIT = 1.0

F = TypeVar("F", bound=Callable[..., Any])


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


def command(group: typer.Typer = app, name: str | None = None) -> Callable[[F], F]:
    """Register a command on `group` (the top level by default), its MqliteErrors ending it with status 2."""

    def register(fn: F) -> F:
        wrapped = handles_errors(fn)
        group.command(name)(wrapped)
        return wrapped

    return register


def open_queue(
    dsn: str | None, table: str = DEFAULT_TABLE, *, wait: float | None = None, long_lived: bool = False, **kwargs: Any
) -> Queue:
    """The command's Queue. Unless `long_lived`, a refused first connection is retried for `wait`
    seconds (None: FIRST_CONNECT_WAIT), and every retry for at least as long."""
    if not long_lived:
        kwargs["first_connect_retry_for"] = FIRST_CONNECT_WAIT if wait is None else wait
        if wait is not None:
            kwargs["retry_for"] = max(10.0, wait)
    return Queue(dsn, table=table, **kwargs)


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def duration(text: str, option: str) -> timedelta:
    """`90`, `90s`, `5m`, `1.5h`, `7d`, `2w` as a timedelta; UsageError otherwise."""
    m = _DURATION_RE.match(text)
    if not m:
        raise UsageError(f"{option} {text!r} is not a duration (examples: 30s, 5m, 2h, 7d)")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def main() -> None:
    app()
