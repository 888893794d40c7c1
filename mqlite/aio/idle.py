"""`AsyncIdleWait`: `IdleWait`'s backoff for coroutines; `sleep_async` is where an async consumer sleeps.

A subclass can end `sleep_async` early on a signal of its own (a notification that a message was
pushed) without touching the backoff, as `IdleWait.sleep` can for threads.
"""

from __future__ import annotations

import asyncio

from ..idle import IdleWait


class AsyncIdleWait(IdleWait):
    """The backoff between polls of empty queues, awaited. One per consuming task."""

    async def wait_async(self, wake: asyncio.Event | None = None, *, limit: float | None = None) -> bool:
        """After an empty poll: sleep the pause owed (at most `limit`), or until `wake` is set; True if woken."""
        return await self.sleep_async(self.pause(limit), wake)

    async def sleep_async(self, seconds: float, wake: asyncio.Event | None = None) -> bool:
        """Sleep `seconds` without blocking the loop, ended early when `wake` is set; True when woken."""
        if wake is None:
            await asyncio.sleep(seconds)
            return False
        try:
            await asyncio.wait_for(wake.wait(), seconds)
            return True
        except asyncio.TimeoutError:
            return False
