"""`AsyncQueue`: `Queue`'s verbs, awaited; the core runs in threads (`offload`), never on the loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from .. import recovery, registry, schema
from ..admin import Stats
from ..config import DEFAULT_LEASE, check_queue
from ..consume import check_batch
from ..message import Body, Message, as_bytes
from ..queue import HistoryEntry, Queue, Schedule
from ..settle import Claimable
from .batches import GROUP_BODY_MAX, Batches
from .offload import Offload


class AsyncQueue:
    """A `Queue` for coroutines: the same verbs, semantics and errors, each awaited.

    `AsyncQueue(dsn, **options)` builds and owns a `Queue` (`options` as `Queue`'s); with
    `queue=` it shares an existing one (its pool, claim sessions and grouped claims and acks with
    the threads that use it) and leaves it open on `aclose()`. Calls run on at most `threads`
    threads (default: the Queue's pool size plus its claim sessions).

    Cancelling an awaited call is safe: a `take`/`pop` cancelled once it has started gives back
    what it took (claims released at once, popped messages restored with their id); settling
    calls (`ack`, `nack`, `release`, `fail`, `extend`, `checkpoint`) run to their end; any
    other call cancelled before it started never runs.
    """

    def __init__(
        self, dsn: str | None = None, *, queue: Queue | None = None, threads: int | None = None, **options: Any
    ) -> None:
        if queue is not None and (dsn is not None or options):
            raise ValueError("give either queue= or a DSN and Queue options, not both")
        self._owned = queue is None
        self.queue: Queue = Queue(dsn, **options) if queue is None else queue
        if threads is None:
            threads = self.queue._pool.size + self.queue._sessions.limit
        self._offload = Offload(threads, self.queue.give_back)
        self._batches = Batches(self.queue, self._offload)

    def __repr__(self) -> str:
        return f"AsyncQueue({self.queue!r})"

    async def __aenter__(self) -> AsyncQueue:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Let the calls in flight end, then close the Queue if this AsyncQueue built it."""
        # Not on our own threads: closing waits for them.
        await asyncio.shield(asyncio.get_running_loop().run_in_executor(None, self._close))

    def _close(self) -> None:
        self._offload.close()
        if self._owned:
            self.queue.close()

    @property
    def given_back(self) -> int:
        """Messages taken for callers that were cancelled before receiving them, and put back."""
        return self._offload.given_back

    # -- producing -------------------------------------------------------------------------------

    async def push(self, queue: str, body: Body, **options: Any) -> int:
        """`Queue.push`: append one message (same options: delay, run_at, unique_key, priority, …); its id.

        Plain pushes (no options, small bodies) made while another is in flight go together into
        one multi-row INSERT.
        """
        name = check_queue(queue)
        if options or (isinstance(body, str) and len(body) > GROUP_BODY_MAX):
            return await self._offload.run(self.queue.push, name, body, **options)
        data = as_bytes(body)
        if len(data) > GROUP_BODY_MAX:
            return await self._offload.run(self.queue.push, name, data)
        return await self._batches.push(name, data)

    async def push_many(self, queue: str, bodies: Iterable[Body], *, priority: int = 0) -> list[int]:
        """`Queue.push_many`: append many messages in one transaction (of `priority`); their ids in order."""
        return await self._offload.run(self.queue.push_many, queue, list(bodies), priority=priority)

    # -- consuming -------------------------------------------------------------------------------

    async def pop(self, queue: str) -> Message | None:
        """`Queue.pop`: take and delete the oldest ready message (at-most-once), or None."""
        got = await self.pop_many(queue, 1)
        return got[0] if got else None

    async def pop_many(self, queue: str, n: int) -> list[Message]:
        """`Queue.pop_many`: take and delete up to `n` of the oldest ready messages."""
        return await self._batches.take(check_queue(queue), check_batch(n), consume=True, lease=DEFAULT_LEASE,
                                        interrupt=None)

    async def take(
        self, queue: str, *, lease: float = DEFAULT_LEASE, interrupt: threading.Event | None = None
    ) -> Message | None:
        """`Queue.take`: claim the oldest ready message (at-least-once), or None; settle it here."""
        got = await self.take_many(queue, 1, lease=lease, interrupt=interrupt)
        return got[0] if got else None

    async def take_many(
        self, queue: str, n: int, *, lease: float = DEFAULT_LEASE, interrupt: threading.Event | None = None
    ) -> list[Message]:
        """`Queue.take_many`: claim up to `n` of the oldest ready messages.

        Takes of one queue and lease made while another is in flight share one claim statement.
        """
        return await self._batches.take(check_queue(queue), check_batch(n), consume=False, lease=lease,
                                        interrupt=interrupt)

    @asynccontextmanager
    async def claim(
        self, queue: str, *, lease: float = DEFAULT_LEASE, interrupt: threading.Event | None = None
    ) -> AsyncIterator[Message | None]:
        """`async with q.claim(queue) as message:` as `Queue.claim`; None when nothing is ready.

        A normal exit acknowledges the message; an exception records a failed attempt (retried
        after the backoff, failed after `max_attempts`); a cancellation (or KeyboardInterrupt)
        releases it at once without counting an attempt.
        """
        message = await self.take(queue, lease=lease, interrupt=interrupt)
        if message is None:
            yield None
            return
        try:
            yield message
        except BaseException as exc:
            if not message._handle.finished:
                if isinstance(exc, Exception):
                    await self.nack(message, exc)
                else:
                    await self.release(message)
            raise
        else:
            if not message._handle.finished:
                await self.ack(message)

    async def recover(self) -> recovery.Recovery:
        """`Queue.recover`: put back claims whose owner is gone."""
        return await self._offload.run(self.queue.recover)

    # -- settling: each runs to its end, even when its awaiter is cancelled ----------------------

    async def ack(self, message: Claimable) -> bool:
        """`Queue.ack`: delete a claimed message; False if its claim was lost meanwhile.

        Acks made while another is in flight share one DELETE.
        """
        return await self._batches.ack(message)

    async def ack_many(self, messages: Iterable[Claimable]) -> int:
        """`Queue.ack_many`: delete many claimed messages in one statement; how many were still held."""
        return await self._offload.finish(self.queue.ack_many, list(messages))

    async def nack(
        self, message: Claimable, error: str | BaseException | None = None, *, delay: float | None = None
    ) -> bool:
        """`Queue.nack`: record a failed attempt (retried after the backoff, or failed at the last)."""
        return await self._offload.finish(self.queue.nack, message, error, delay=delay)

    async def release(self, message: Claimable, delay: float = 0.0) -> bool:
        """`Queue.release`: put a claimed message back, after `delay` seconds, no attempt counted."""
        return await self._offload.finish(self.queue.release, message, delay)

    async def fail(self, message: Claimable, reason: str | BaseException) -> bool:
        """`Queue.fail`: give up on a claimed message, kept as failed with `reason`."""
        return await self._offload.finish(self.queue.fail, message, reason)

    async def extend(self, message: Claimable, seconds: float) -> bool:
        """`Queue.extend`: make a claim's lease run until `seconds` from now."""
        return await self._offload.finish(self.queue.extend, message, seconds)

    async def checkpoint(
        self, message: Claimable, cursor: str, progress: float | None = None, *, lease: float = DEFAULT_LEASE
    ) -> bool:
        """`Queue.checkpoint`: save where a handler has got to, and renew the lease."""
        return await self._offload.finish(self.queue.checkpoint, message, cursor, progress, lease=lease)

    async def cancel(self, queue: str, message_id: int) -> str:
        """`Queue.cancel`: cancel a message (removed, or marked cancelling while it runs)."""
        return await self._offload.finish(self.queue.cancel, queue, message_id)

    async def keep_history(self, queue: str, days: int | None = 7) -> None:
        """`Queue.keep_history`: keep (or, with None, stop keeping) `queue`'s finished messages."""
        await self._offload.run(self.queue.keep_history, queue, days)

    async def history_days(self, queue: str) -> int | None:
        """`Queue.history_days`: days of history `queue` keeps (None: off)."""
        return await self._offload.run(self.queue.history_days, queue)

    async def history(self, queue: str, **options: Any) -> list[HistoryEntry]:
        """`Queue.history`: finished messages of `queue`, newest first."""
        return await self._offload.run(self.queue.history, queue, **options)

    async def replay(self, queue: str, **options: Any) -> list[int]:
        """`Queue.replay`: push copies of finished messages back."""
        return await self._offload.finish(self.queue.replay, queue, **options)

    async def schedule(self, name: str, queue: str, body: Body, **options: Any) -> Schedule:
        """`Queue.schedule`: add or replace a recurring schedule."""
        return await self._offload.run(self.queue.schedule, name, queue, body, **options)

    async def unschedule(self, name: str) -> bool:
        """`Queue.unschedule`: remove a schedule."""
        return await self._offload.run(self.queue.unschedule, name)

    async def schedules(self) -> list[Schedule]:
        """`Queue.schedules`: every schedule of the table."""
        return await self._offload.run(self.queue.schedules)

    # -- looking and tidying ---------------------------------------------------------------------

    async def stats(self) -> Stats:
        """`Queue.stats`: depth, totals and oldest ready age of every queue."""
        return await self._offload.run(self.queue.stats)

    async def peek(self, queue: str, limit: int = 10, *, failed: bool = False) -> list[Message]:
        """`Queue.peek`: messages in delivery order (or the failed ones), nothing claimed."""
        return await self._offload.run(self.queue.peek, queue, limit, failed=failed)

    async def size(self, queue: str) -> int:
        """`Queue.size`: how many messages of `queue` are ready now."""
        return await self._offload.run(self.queue.size, queue)

    async def retry_failed(self, queue: str, ids: Iterable[int] | None = None) -> int:
        """`Queue.retry_failed`: make failed messages ready again; how many."""
        return await self._offload.run(self.queue.retry_failed, queue, None if ids is None else list(ids))

    async def purge_failed(self, queue: str, older_than: Any = None) -> int:
        """`Queue.purge_failed`: delete failed messages (those failed before `older_than`)."""
        return await self._offload.run(self.queue.purge_failed, queue, older_than)

    async def purge(self, queue: str) -> int:
        """`Queue.purge`: delete every ready and delayed message of `queue`."""
        return await self._offload.run(self.queue.purge, queue)

    async def pause(self, queue: str) -> None:
        """`Queue.pause`: stop handing out messages of `queue`, in every process."""
        await self._offload.run(self.queue.pause, queue)

    async def resume(self, queue: str) -> None:
        """`Queue.resume`: hand out messages of a paused queue again."""
        await self._offload.run(self.queue.resume, queue)

    async def is_paused(self, queue: str) -> bool:
        """`Queue.is_paused`."""
        return await self._offload.run(self.queue.is_paused, queue)

    async def in_progress(self, queue: str | None = None, limit: int = 100) -> list[Message]:
        """`Queue.in_progress`: claimed messages, oldest claim first."""
        return await self._offload.run(self.queue.in_progress, queue, limit)

    async def workers(self) -> list[registry.WorkerInfo]:
        """`Queue.workers`: the registered worker processes."""
        return await self._offload.run(self.queue.workers)

    async def reset_counters(self, queue: str | None = None) -> None:
        """`Queue.reset_counters`."""
        await self._offload.run(self.queue.reset_counters, queue)

    async def apply_schema(self) -> list[schema.Migration]:
        """`Queue.apply_schema`: create or upgrade the messages table; the migrations applied."""
        return await self._offload.run(self.queue.apply_schema)

    async def schema_status(self) -> schema.SchemaStatus:
        """`Queue.schema_status`."""
        return await self._offload.run(self.queue.schema_status)
