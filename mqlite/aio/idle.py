"""`AsyncIdleWait`: `IdleWait`'s backoff for coroutines; `sleep_async` is where an async consumer sleeps.

A subclass can end `sleep_async` early on a signal of its own without touching the backoff, as
`IdleWait.sleep` can for threads; given a `bell` (`Queue.doorbell`), the sleep ends when a message
of its `queues` becomes due, as for threads (the listener's thread wakes the loop).
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
        if self.bell is not None and self.queues:
            return await self._sleep_on_bell_async(seconds, wake)
        if wake is None:
            await asyncio.sleep(seconds)
            return False
        try:
            await asyncio.wait_for(wake.wait(), seconds)
            return True
        except asyncio.TimeoutError:
            return False

    async def _sleep_on_bell_async(self, seconds: float, wake: asyncio.Event | None) -> bool:
        assert self.bell is not None
        if wake is not None and wake.is_set():
            return True
        seen = self._seen
        loop = asyncio.get_running_loop()
        rung = asyncio.Event()
        token = self.bell.subscribe(self.queues, self._seen, lambda: loop.call_soon_threadsafe(rung.set))
        if token is not None:
            waits = [asyncio.ensure_future(rung.wait())]
            if wake is not None:
                waits.append(asyncio.ensure_future(wake.wait()))
            try:
                await asyncio.wait(waits, timeout=max(0.0, seconds), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waits:
                    task.cancel()
                self.bell.unsubscribe(token)
        self._seen = self.bell.generation
        return seen != self._seen or (wake is not None and wake.is_set())
