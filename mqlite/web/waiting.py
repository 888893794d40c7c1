"""Long-poll support: wake the requests waiting on a queue when this process makes a message ready.

A waiting request holds no database connection: it sleeps here between two short library calls.
Messages pushed by other processes are found by the next poll (the backoff caps at `MAX_PAUSE`);
messages pushed, nacked, released or retried through this server wake the waiters at once.
"""

from __future__ import annotations

import asyncio

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

    async def wait(self, queue: str, timeout: float) -> None:
        """Sleep until `notify(queue)` or `timeout` seconds, whichever comes first."""
        event = self._events.get(queue)
        if event is None:
            event = self._events[queue] = asyncio.Event()
        self.waiting += 1
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self.waiting -= 1
