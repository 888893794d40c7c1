"""Long-poll support: wake the requests waiting on a queue when this process makes a message ready.

A waiting request holds no database connection: it sleeps here between two short library calls.
Messages pushed by other processes ring the Queue's doorbell (mqlite/wake.py) and wake the
waiters within milliseconds; a lost ring is made up by the next poll (the backoff caps at
`MAX_PAUSE`). Messages pushed, nacked, released or retried through this server wake them at once.
"""

from __future__ import annotations

import asyncio

from ..aio.idle import AsyncIdleWait

# A long-poll's `IdleWait`: the first pause between polls of an empty queue, doubling to the last.
FIRST_PAUSE = 0.02  # seconds
MAX_PAUSE = 0.5  # the backoff stops growing here: the worst-case extra latency


class Arrivals:
    """One asyncio.Event per queue with waiters, set (and forgotten) when a message may be ready."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self.waiting = 0  # requests asleep in `wait` right now (a metric, and a hook for tests)

    def notify(self, queue: str) -> None:
        """Wake everyone waiting on `queue` (call from the event loop)."""
        event = self._events.pop(queue, None)
        if event is not None:
            event.set()

    async def wait(self, queue: str, timeout: float, idle: AsyncIdleWait | None = None) -> None:
        """Sleep until `notify(queue)`, `idle`'s doorbell rings, or `timeout` seconds."""
        event = self._events.get(queue)
        if event is None:
            event = self._events[queue] = asyncio.Event()
        self.waiting += 1
        try:
            if idle is not None:
                await idle.sleep_async(timeout, event)
            else:
                await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self.waiting -= 1
