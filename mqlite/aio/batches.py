"""The gathered calls of an `AsyncQueue`: pushes, pops, takes and acks, one thread call per batch.

Each kind of call has one `Gather` per event loop and key (queue name; for takes also the lease),
made on first use. Whatever would be one caller's own error (a bad name or count, a body that cannot be stored,
a message settled twice) is checked in the event loop before the caller joins a batch, so that a
batch fails only for reasons that all its callers share (the server is gone).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Hashable
from dataclasses import replace
from functools import partial
from typing import Any

from ..claimer import MAX_BATCH
from ..errors import NotClaimed, PayloadTooLarge
from ..message import Message
from ..queue import Queue
from ..settle import ACK_GROUP, Claimable, receipt_of
from .gather import Failed, Gather
from .offload import Offload

GROUP_BODY_MAX = 64 * 1024  # larger bodies are pushed alone: a batch's statements stay small
PUSH_GROUP = 1000  # pushes one batch carries at most (push_many splits them into statements)
_RETIRE_ABOVE = 64  # gathers kept before idle ones are dropped (a process may touch many queue names)


class Batches:
    """The gathers of one AsyncQueue."""

    def __init__(self, queue: Queue, offload: Offload) -> None:
        self._queue = queue
        self._offload = offload
        self._gathers: dict[Hashable, Gather[Any, Any]] = {}

    async def push(self, name: str, data: bytes) -> int:
        """Push one checked body of `name` (at most GROUP_BODY_MAX bytes) with the others waiting."""
        gather: Gather[bytes, int] = self._gather(
            ("push", name), lambda: Gather(partial(self._push, name), limit=PUSH_GROUP)
        )
        return await gather.submit(data)

    async def take(
        self, name: str, n: int, *, consume: bool, lease: float, interrupt: threading.Event | None
    ) -> list[Message]:
        """Pop (`consume`) or claim up to `n` messages of `name` with the others waiting."""
        gather: Gather[int, list[Message]] = self._gather(
            ("take", name, consume, lease, interrupt),
            lambda: Gather(partial(self._take, name, consume, lease, interrupt), limit=MAX_BATCH,
                           size=lambda want: want, unreceived=self._offload.give_back_soon),
        )
        return await gather.submit(n)

    async def ack(self, message: Claimable) -> bool:
        """Acknowledge one claimed message with the others waiting; runs even if the caller is cancelled."""
        gather: Gather[Claimable, bool] = self._gather(
            ("ack",), lambda: Gather(self._ack, limit=ACK_GROUP, keep=True)
        )
        return await gather.submit(ackable(message))

    # -- one thread call per batch -----------------------------------------------------------------

    async def _push(self, name: str, datas: list[bytes]) -> list[int | Failed]:
        try:
            return list(await self._offload.run(self._queue.push_many, name, datas))
        except PayloadTooLarge:  # nothing was sent: each body on its own, each caller its own answer
            return await self._offload.run(self._push_each, name, datas)

    def _push_each(self, name: str, datas: list[bytes]) -> list[int | Failed]:
        results: list[int | Failed] = []
        for data in datas:
            try:
                results.append(self._queue.push(name, data))
            except Exception as exc:  # noqa: BLE001 - that caller's error
                results.append(Failed(exc))
        return results

    async def _take(
        self, name: str, consume: bool, lease: float, interrupt: threading.Event | None, wants: list[int]
    ) -> list[list[Message]]:
        if consume:
            got = await self._offload.taking(self._queue.pop_many, name, sum(wants))
        else:
            got = await self._offload.taking(self._queue.take_many, name, sum(wants), lease=lease,
                                             interrupt=interrupt)
        shares, start = [], 0
        for want in wants:  # oldest messages to the first callers
            shares.append(got[start:start + want])
            start += want
        return shares

    async def _ack(self, messages: list[Claimable]) -> list[bool]:
        return await self._offload.finish(self._queue.ack_each, messages)

    def _gather(self, key: Hashable, make: Callable[[], Gather[Any, Any]]) -> Gather[Any, Any]:
        # One set of gathers per event loop: a batch's futures belong to the loop that awaits them.
        key = (asyncio.get_running_loop(), key)
        gather = self._gathers.get(key)
        if gather is None:
            if len(self._gathers) >= _RETIRE_ABOVE:
                for old in [k for k, g in self._gathers.items() if g.idle]:
                    del self._gathers[old]
            gather = self._gathers[key] = make()
        return gather


def ackable(message: Claimable) -> Claimable:
    """What the core acknowledges for `message`, checked here so that one caller's mistake fails alone.

    A taken Message is marked settled now (a second ack raises NotClaimed at once) and goes to the
    batch as a copy without its handle, so the batch does not check it again.
    """
    if not isinstance(message, Message):
        return receipt_of(message)
    handle = message._handle
    if handle is not None and handle.finished:
        raise NotClaimed(f"message {message.id} was already settled")
    _ = message.receipt  # NotClaimed when it was never claimed
    if handle is not None:
        handle.finished = True
    return replace(message, _handle=None)
