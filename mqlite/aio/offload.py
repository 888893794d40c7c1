"""Running the blocking core in threads, so that an event loop never waits on the database.

Three ways to hand a call to a thread, by what a cancelled awaiter must leave behind:

- `run`: a call that has not started is dropped; one that has started finishes (a push, a read);
- `finish`: the call always runs to its end (settling a claim: a cancelled `ack` still deletes);
- `taking`: a call that hands out messages; if its awaiter is gone by the time they arrive, they
  go to `give_back` (released, or restored to the table), so every message ends either in the
  queue or in the hands of exactly one caller.

A cancelled `await` cannot stop a thread mid-statement: these rules are what make cancelling safe.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from ..message import Message

T = TypeVar("T")
log = logging.getLogger("mqlite.aio")


class Offload:
    """A pool of at most `threads` threads running core calls for coroutines."""

    def __init__(self, threads: int, give_back: Callable[[list[Message]], None]) -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self.threads = threads
        self._current: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._give_back = give_back
        self.given_back = 0  # messages handed to `give_back` because their awaiter had left

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` in a thread; cancelled before it starts, it never runs."""
        return await asyncio.wrap_future(self._executor.submit(fn, *args, **kwargs))

    async def finish(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` in a thread, run to its end even if the awaiter is cancelled."""
        inner = asyncio.wrap_future(self._executor.submit(fn, *args, **kwargs))
        inner.add_done_callback(_retrieved)  # an error nobody awaits any more is not logged as lost
        return await asyncio.shield(inner)

    async def taking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` returning a Message, None or a list of Messages, none of them lost.

        If the awaiter is cancelled once the call has started, what it returns is given back as soon
        as it arrives (on a worker thread): nobody else can receive it.
        """
        job = self._executor.submit(fn, *args, **kwargs)
        try:
            return await asyncio.wrap_future(job)
        except BaseException:
            # Cancelled (or the loop is going away) while the call was queued, running or just done.
            if not job.cancel():
                job.add_done_callback(self._unreceived)
            raise

    @property
    def _executor(self) -> ThreadPoolExecutor:
        # Made on first use, and again after `close` (as a Queue reopens its connections).
        with self._lock:
            if self._current is None:
                self._current = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="mqlite-aio")
            return self._current

    def close(self) -> None:
        """Wait for the calls in flight (and their give-backs), then stop the threads. Blocks."""
        with self._lock:
            executor, self._current = self._current, None
        if executor is not None:
            executor.shutdown(wait=True)

    def _unreceived(self, job: Future[Any]) -> None:
        if job.cancelled() or job.exception() is not None:
            return
        got = job.result()
        self.give_back_soon(got if isinstance(got, list) else [] if got is None else [got])

    def give_back_soon(self, messages: list[Message]) -> None:
        """Hand `messages`, taken for a caller that was cancelled, to `give_back` on a worker thread."""
        if not messages:
            return
        self.given_back += len(messages)
        log.info("giving back %d message(s) taken for a caller that was cancelled", len(messages))
        executor = self._current
        try:
            # Never on the event loop's thread (a done job's callback runs there): it blocks.
            if executor is None:
                raise RuntimeError("closed")
            executor.submit(self._give_back, messages)
        except RuntimeError:  # closing: this is a worker thread finishing its last job
            self._give_back(messages)


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
