"""`Gather`: the calls coroutines make while one is in flight go together into the next, one thread hop.

The core already groups what its threads ask at the same time (one claim, one DELETE of acks);
handing each coroutine's call to a thread of its own would pay two thread switches per message to
reach that group, and on a busy machine each switch waits for a time slice. Gathered in the event
loop first, a batch costs one switch there and back, however many coroutines are in it; a lone
caller finds nothing in flight and goes at once.

A caller cancelled before its batch starts leaves the line (with `keep`, its item still goes: a
cancelled `ack` still acknowledges). Once its batch has started, the batch runs to its end and the
caller's share goes to `unreceived` (a claim given back, a popped message restored): nothing a
batch hands out is ever dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Failed:
    """A result that is one caller's own error (the others of its batch succeeded)."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class Gather(Generic[T, R]):
    """Runs `run(items) -> results` (a coroutine; one result, or `Failed`, per item, in order), one
    batch in flight.

    A batch takes the oldest waiting items up to `limit` (by `size`). `unreceived(result)` gets the
    result of a caller that was cancelled after its batch started.
    """

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[Sequence[R | Failed]]],
        *,
        limit: int,
        size: Callable[[T], int] = lambda item: 1,
        unreceived: Callable[[R], None] | None = None,
        keep: bool = False,
    ) -> None:
        self._run = run
        self._limit = limit
        self._size = size
        self._unreceived = unreceived
        self._keep = keep
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._leader: asyncio.Task[None] | None = None

    @property
    def idle(self) -> bool:
        return self._leader is None and not self._waiting

    async def submit(self, item: T) -> R:
        """Run `item` in the next batch; its result (or the batch's error)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._leader is None:
            # Not the caller's own task: cancelling a caller must never cancel a batch in flight.
            self._leader = asyncio.get_running_loop().create_task(self._lead())
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                self._give_up(future.result())  # the result came, but the caller was cancelled first
            raise

    async def _lead(self) -> None:
        try:
            while self._waiting:
                batch = self._next_batch()
                if not batch:
                    continue
                try:
                    results = await self._run([item for item, _ in batch])
                except Exception as exc:  # noqa: BLE001 - each caller gets the batch's error
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                except BaseException:
                    # The leader itself was cancelled (the loop is closing): its run gives back
                    # what it took; the callers are cancelled with it.
                    for _, future in batch + self._waiting:
                        future.cancel()
                    self._waiting = []
                    raise
                for (_, future), result in zip(batch, results, strict=True):
                    if isinstance(result, Failed):
                        if not future.done():
                            future.set_exception(result.error)
                    elif future.cancelled():
                        self._give_up(result)
                    else:
                        future.set_result(result)
        finally:
            self._leader = None

    def _next_batch(self) -> list[tuple[T, asyncio.Future[R]]]:
        """The oldest waiting callers still waiting, up to `limit`; cancelled ones are dropped."""
        batch: list[tuple[T, asyncio.Future[R]]] = []
        total = 0
        rest: list[tuple[T, asyncio.Future[R]]] = []
        for entry in self._waiting:
            if entry[1].cancelled() and not self._keep:
                continue
            size = self._size(entry[0])
            if rest or (batch and total + size > self._limit):
                rest.append(entry)
                continue
            batch.append(entry)
            total += size
        self._waiting = rest
        return batch

    def _give_up(self, result: R) -> None:
        if self._unreceived is not None:
            self._unreceived(result)
