"""`AsyncWorker`: the consuming loop for coroutine handlers, `Worker`'s rules on one event loop.

    worker = AsyncWorker(q, ["emails", "sms"], handle, concurrency=16)   # async def handle(message)
    result = await worker.run()    # SIGTERM/SIGINT (or worker.stop()) ends it cleanly

`concurrency` tasks each claim from the listed queues in order (their takes share claim
statements), await the handler, and acknowledge the message when it returns or record the
failure when it raises. Idle tasks back off from `idle_min` to `idle_max` (`AsyncIdleWait`).

Stopping (first SIGTERM/SIGINT, `stop()`, `max_messages`, `max_seconds`, `until_empty`): no new
claim is made and the handlers in hand finish; those still running after `stop_timeout` are
cancelled, which releases their messages at once. A second signal exits the process at once.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .. import registry
from ..config import DEFAULT_LEASE, check_queue
from ..errors import Cancelled, Interrupted, MqliteError, NotClaimed
from ..message import Message
from ..queue import Queue
from ..worker import WorkerResult, _one_line, attempt_number
from .idle import AsyncIdleWait
from .queue import AsyncQueue

log = logging.getLogger("mqlite.worker")

AsyncHandler = Callable[[Message], Awaitable[Any]]
_PRUNE_AFTER = 6  # heartbeat intervals of silence after which a registered worker is pruned


def is_async_handler(handler: object) -> bool:
    """Whether `handler` is an `async def` function (or an object whose `__call__` is one)."""
    return inspect.iscoroutinefunction(handler) or (
        callable(handler) and inspect.iscoroutinefunction(type(handler).__call__)
    )


class AsyncWorker:
    """Claims messages from `queues` (in order of priority) and awaits `handler(message)` for each.

    `queue`: an AsyncQueue (or a Queue, shared). Returning acknowledges the message; raising
    records a failure (retried with backoff, failed after max attempts). `stop()` may be called
    from any thread. The idle wait of each task is an `idle_wait(idle_min, idle_max)`.
    """

    idle_wait: type[AsyncIdleWait] = AsyncIdleWait

    def __init__(
        self,
        queue: AsyncQueue | Queue,
        queues: Sequence[str],
        handler: AsyncHandler,
        *,
        concurrency: int = 1,
        idle_min: float = 0.05,
        idle_max: float = 1.0,
        stop_timeout: float = 30.0,
        max_messages: int | None = None,
        max_seconds: float | None = None,
        until_empty: bool = False,
        lease: float = DEFAULT_LEASE,
        handle_signals: bool = True,
        stop_on_error: bool = False,
        heartbeat_every: float = 5.0,
    ) -> None:
        if isinstance(queues, str):
            queues = [queues]
        if not queues:
            raise ValueError("an AsyncWorker needs at least one queue")
        if not is_async_handler(handler):
            raise TypeError("the handler of an AsyncWorker must be an async def function (use Worker for others)")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not 0 < idle_min <= idle_max:
            raise ValueError("need 0 < idle_min <= idle_max")
        if max_messages is not None and max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        self.queue = queue if isinstance(queue, AsyncQueue) else AsyncQueue(queue=queue)
        self.queues = [check_queue(name) for name in queues]
        self.handler = handler
        self.concurrency = concurrency
        self.idle_min, self.idle_max = idle_min, idle_max
        self.stop_timeout = stop_timeout
        self.max_messages, self.max_seconds, self.until_empty = max_messages, max_seconds, until_empty
        self.lease = lease
        self.handle_signals = handle_signals
        self.stop_on_error = stop_on_error
        self.heartbeat_every = heartbeat_every
        self._interrupt = threading.Event()  # set when stopping: `message.checkpoint()` raises Interrupted
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._reason = ""
        self._signalled = False
        self._error: MqliteError | None = None
        self._taken = 0
        self._counts = {"processed": 0, "failed": 0, "errors": 0}
        self._in_hand: dict[int, Message] = {}
        self._deadline: float | None = None
        self._worker_id: int | None = None
        self._started = False

    # -- control ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to stop: no new claims; messages in hand are finished. Returns at once."""
        loop = self._loop
        if loop is None or not loop.is_running():
            self._request_stop("stopped")
        else:
            loop.call_soon_threadsafe(self._request_stop, "stopped")

    @property
    def stopping(self) -> bool:
        return self._interrupt.is_set()

    def in_hand(self) -> list[Message]:
        """The messages inside the handler right now."""
        return list(self._in_hand.values())

    def _request_stop(self, reason: str) -> None:
        if not self._reason:
            self._reason = reason
        self._interrupt.set()
        if self._stop is not None:
            self._stop.set()

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self._signalled:
            log.warning("%s again: exiting now; claims in hand come back by recovery", name)
            logging.shutdown()
            os._exit(128 + signum)
        self._signalled = True
        log.warning("%s received: finishing %d message(s) in hand, then exiting (send it again to exit at once)",
                    name, len(self._in_hand))
        self._request_stop("signal")

    # -- running ------------------------------------------------------------------------------

    async def run(self) -> WorkerResult:
        """Run until stopped; returns what was done. Raises MqliteError if the queues cannot be read at all."""
        if self._started:
            raise RuntimeError("this AsyncWorker has already run; build a new one")
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._interrupt.is_set():  # stop() before run()
            self._stop.set()
        for name in self.queues:
            await self.queue.size(name)  # fail fast on a bad DSN, a missing schema or a bad name
        self._deadline = None if self.max_seconds is None else time.monotonic() + self.max_seconds
        q = self.queue.queue
        log.info("pid %d consuming %s from %s, table %s, %d task(s)", os.getpid(), ", ".join(self.queues),
                 q.settings.redacted(), q.table, self.concurrency)
        restore = self._install_signals()
        await self._register()
        heartbeat = asyncio.create_task(self._heartbeat(max(0.5, min(self.lease / 3, self.heartbeat_every))))
        tasks = [asyncio.create_task(self._consume(), name=f"mqlite-worker-{i}") for i in range(self.concurrency)]
        abandoned = 0
        try:
            await self._stop.wait()
            _, late = await asyncio.wait(tasks, timeout=self.stop_timeout)
            if late:
                abandoned = len(self._in_hand)
                log.warning("%d message(s) still in the handler after %gs: cancelling them (released at once)",
                            abandoned, self.stop_timeout)
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
        finally:
            for task in tasks:
                task.cancel()  # only when run() itself is cancelled: each releases what it holds
            await asyncio.gather(*tasks, return_exceptions=True)
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            await self._unregister()
            restore()
        counts = dict(self._counts)
        log.info("stopped (%s): %d processed, %d failed", self._reason, counts["processed"], counts["failed"])
        if self._error is not None:
            raise self._error
        return WorkerResult(counts["processed"], counts["failed"], counts["errors"], abandoned, self._reason)

    async def _consume(self) -> None:
        assert self._stop is not None
        bell = getattr(self.queue.queue, "doorbell", None)
        idle = self.idle_wait(self.idle_min, self.idle_max, bell=bell, queues=self.queues)
        try:
            while not self._stop.is_set():
                if self._deadline is not None and time.monotonic() >= self._deadline:
                    self._request_stop("max_seconds")
                    break
                try:
                    found = await self._sweep()
                except MqliteError as exc:
                    self._counts["errors"] += 1
                    if self.stop_on_error:
                        self._error = exc
                        self._request_stop("error")
                        break
                    log.warning("cannot consume: %s: %s (retrying in %gs)", type(exc).__name__, _one_line(exc),
                                self.idle_max)
                    await idle.sleep_async(self.idle_max, self._stop)
                    continue
                if found is not None:
                    if found:
                        idle.reset()
                    continue
                if self.until_empty:
                    self._request_stop("empty")
                    break
                left = None if self._deadline is None else self._deadline - time.monotonic()
                await idle.wait_async(self._stop, limit=left)
        except asyncio.CancelledError:
            raise
        except BaseException:
            log.exception("worker task crashed")
            self._request_stop("crashed")

    async def _sweep(self) -> bool | None:
        """Claim from the queues in order; handle the first message found.

        True: a message was handled; False: it failed, or the worker is stopping; None: all were empty.
        """
        assert self._stop is not None
        for name in self.queues:
            if self._stop.is_set():
                return False
            if self.max_messages is not None and self._taken >= self.max_messages:
                self._request_stop("max_messages")
                return False
            self._taken += 1
            async with self.queue.claim(name, lease=self.lease, interrupt=self._interrupt) as message:
                if message is None:
                    self._taken -= 1
                    continue
                return await self._handle(message)
        return None

    async def _handle(self, message: Message) -> bool:
        """Await the handler inside the claim block; raising out of here settles the claim."""
        self._in_hand[id(message)] = message
        try:
            await self.handler(message)
        except Cancelled:
            log.info("message %s of queue %r cancelled while running; ended", message.id, message.queue)
            return False
        except Interrupted:
            log.info("message %s of queue %r interrupted at its checkpoint; released", message.id, message.queue)
            await self.queue.release(message)
            return False
        except Exception as exc:
            self._counts["failed"] += 1
            log.warning("message %s of queue %r failed (attempt %d): %s: %s", message.id, message.queue,
                        attempt_number(message), type(exc).__name__, _one_line(exc))
            await self.queue.nack(message, exc)
            return False
        finally:
            self._in_hand.pop(id(message), None)
        if not message._handle.finished:
            await self.queue.ack(message)
        elif message._handle.cancelled:  # ended cancelled by a lease renewal, the handler unaware
            return False
        self._counts["processed"] += 1
        return True

    # -- signals, heartbeat and the registry ----------------------------------------------------

    def _install_signals(self) -> Callable[[], None]:
        """Take SIGTERM/SIGINT while running (main thread only); returns what puts the old handlers back."""
        loop = self._loop
        if not self.handle_signals or threading.current_thread() is not threading.main_thread() or loop is None:
            return lambda: None
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        for sig in previous:
            loop.add_signal_handler(sig, self._on_signal, sig)

        def restore() -> None:
            for sig, handler in previous.items():
                loop.remove_signal_handler(sig)
                signal.signal(sig, handler)

        return restore

    async def _heartbeat(self, interval: float) -> None:
        """Renew the lease of every message in hand and heartbeat the registry, every `interval`."""
        while True:
            await asyncio.sleep(interval)
            await self._beat()
            for message in self.in_hand():
                try:
                    await self.queue.extend(message, self.lease)
                except NotClaimed:
                    pass  # settled between the listing and the extend
                except MqliteError as exc:
                    log.warning("cannot extend the lease of message %s: %s", message.id, _one_line(exc))

    async def _registry(self, step: Any, *args: Any) -> Any:
        return await self.queue._offload.run(self.queue.queue._registry, step, *args)

    async def _register(self) -> None:
        try:
            self._worker_id = await self._registry(registry.register, self.queues)
        except MqliteError as exc:  # the registry is for operators: never a reason not to consume
            log.warning("cannot register in the worker registry: %s", _one_line(exc))

    async def _beat(self) -> None:
        if self._worker_id is None:
            return
        current = sorted(m.id for m in self.in_hand())
        try:
            await self._registry(registry.heartbeat, self._worker_id, current, self._counts["processed"],
                                 self._counts["failed"], _PRUNE_AFTER * self.heartbeat_every)
        except MqliteError as exc:
            log.warning("cannot heartbeat: %s", _one_line(exc))

    async def _unregister(self) -> None:
        if self._worker_id is not None:
            try:
                await self._registry(registry.unregister, self._worker_id)
            except MqliteError as exc:
                log.warning("cannot unregister (it will be pruned): %s", _one_line(exc))
