"""`Api`: what the routes of one app share, held on `app.state.api` (the queue, its limits, waiters, leases, stats).

Routes call the library through `Api.aq`, an `AsyncQueue` over the app's Queue: no route blocks the
event loop, and a request cancelled mid-call (a client gone, the server stopping) loses no message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request

from ..aio import AsyncQueue
from ..aio.idle import AsyncIdleWait
from ..message import Message
from ..queue import Queue, Stats
from . import metrics
from .errors import ApiError
from .leases import LeaseKeeper
from .security import Guard
from .waiting import FIRST_PAUSE, MAX_PAUSE, Arrivals


class StatsCache:
    """`Queue.stats()` at most once per `ttl` seconds, shared by the page and /stats (one read in flight)."""

    def __init__(self, queue: AsyncQueue, ttl: float) -> None:
        self._queue = queue
        self.ttl = ttl
        self._value: Stats | None = None
        self._at = 0.0
        self._lock: asyncio.Lock | None = None

    def invalidate(self) -> None:
        self._value = None

    async def get(self) -> Stats:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._value is None or time.monotonic() - self._at >= self.ttl:
                self._value = await self._queue.stats()
                self._at = time.monotonic()
            return self._value


class Api:
    """One app's queue and settings, and the live state its routes share. See `create_app` for the options."""

    def __init__(self, queue: Queue, *, token: str | None, max_body: int, stats_ttl: float, max_queues: int,
                 lease_sweep: float, refresh: float) -> None:
        self.queue = queue
        self.aq = AsyncQueue(queue=queue)
        self.max_body = max_body
        self.max_queues = max_queues
        self.refresh = refresh
        self.guard = Guard(token)
        self.arrivals = Arrivals()
        self.stats = StatsCache(self.aq, stats_ttl)
        self.leases = LeaseKeeper(self.aq, self.on_ready, every=lease_sweep)
        self.registry = metrics.registry(
            queue, lambda: {"waiting_requests": float(self.arrivals.waiting), "claims_held": float(len(self.leases))}
        )
        self._consuming: set[str] = set()

    def on_ready(self, name: str) -> None:
        """A message of `name` may be ready now: fresh stats, and wake the requests waiting on it."""
        self.stats.invalidate()
        self.arrivals.notify(name)

    def consume_slot(self, name: str) -> None:
        """Count `name` among the queues this server consumes from; 429 past `max_queues`."""
        if name not in self._consuming:
            if len(self._consuming) >= self.max_queues:
                raise ApiError(
                    429, "too_many_queues",
                    f"this server already consumes from {self.max_queues} queues (each keeps database sessions open)",
                )
            self._consuming.add(name)

    async def poll(
        self, request: Request, name: str, wait: float, fetch: Callable[[], Awaitable[Message | None]]
    ) -> Message | None:
        """`fetch` now, then again with backoff (or when woken) until a message or `wait` seconds.

        No database connection is held between two tries: the request sleeps in the event loop.
        """
        deadline = time.monotonic() + wait
        idle = AsyncIdleWait(FIRST_PAUSE, MAX_PAUSE, bell=getattr(self.queue, "doorbell", None), queues=(name,))
        while True:
            message = await fetch()
            remaining = deadline - time.monotonic()
            if message is not None or remaining <= 0:
                return message
            if await request.is_disconnected():
                return None  # nobody to hand a message to: take nothing
            await self.arrivals.wait(name, idle.pause(remaining), idle)


def api(request: Request) -> Api:
    """The `Api` of the app serving `request`."""
    return request.app.state.api  # type: ignore[no-any-return]
