"""mqlite for asyncio: `AsyncQueue` (Queue's verbs, awaited) and `AsyncWorker` (coroutine handlers).

    from mqlite.aio import AsyncQueue, AsyncWorker

    async with AsyncQueue(dsn) as q:
        await q.push("emails", b"hello")
        async with q.claim("emails") as message:   # acknowledged when the block ends normally
            ...
        await AsyncWorker(q, ["emails"], handle, concurrency=16).run()

The core runs in threads: the event loop never waits on a round trip, and every statement, claim
session and grouped claim or ack is the one `Queue` uses. Cancelling a call never loses a message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .queue import AsyncQueue

if TYPE_CHECKING:
    from .worker import AsyncWorker


def __getattr__(name: str) -> Any:
    # The worker (signals, the registry) loads on first use.
    if name == "AsyncWorker":
        from .worker import AsyncWorker

        return AsyncWorker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AsyncQueue", "AsyncWorker"]
