"""mqlite: a message queue in one MySQL/MariaDB table.

    import mqlite
    mqlite.push("emails", b"hello")          # one INSERT over a pooled connection
    message = mqlite.pop("emails")           # at-most-once: claimed, read, deleted
    with mqlite.claim("emails") as message:  # at-least-once: deleted only if the block succeeds
        ...

The module-level functions use one Queue built from `MQLITE_DSN`; build a `Queue` yourself to
choose the DSN, table or pool size.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from . import errors
from .message import Body, Message
from .queue import Queue, QueueStats, Stats, default_queue
from .recovery import Recovery

if TYPE_CHECKING:
    from .worker import Worker, WorkerResult

__version__ = "0.1.0"

# A library logs; the application decides where it goes.
logging.getLogger("mqlite").addHandler(logging.NullHandler())


def push(queue: str, body: Body, *, priority: int = 0) -> int:
    """Append one message to `queue` on the default Queue (lower `priority` first); returns its id."""
    return default_queue().push(queue, body, priority=priority)


def push_many(queue: str, bodies: Iterable[Body], *, priority: int = 0) -> list[int]:
    """Append many messages in one transaction on the default Queue; returns their ids."""
    return default_queue().push_many(queue, bodies, priority=priority)


def pop(queue: str) -> Message | None:
    """Take and delete the oldest ready message of `queue` (at-most-once), or None."""
    return default_queue().pop(queue)


def claim(queue: str) -> AbstractContextManager[Message | None]:
    """Claim the oldest ready message for a `with` block (at-least-once)."""
    return default_queue().claim(queue)


def __getattr__(name: str) -> Any:
    # The worker (threads, signals, subprocesses) loads on first use: a process that only pushes,
    # like `mqlite push` from cron, never needs it.
    if name in ("Worker", "WorkerResult"):
        from . import worker

        return getattr(worker, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Queue",
    "Message",
    "QueueStats",
    "Stats",
    "Recovery",
    "Worker",
    "WorkerResult",
    "errors",
    "push",
    "push_many",
    "pop",
    "claim",
    "__version__",
]
