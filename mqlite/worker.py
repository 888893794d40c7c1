"""`Worker`: the consuming loop for daemons and cron, over `Queue.claim`.

    worker = mqlite.Worker(q, ["emails", "sms"], handle, concurrency=4)
    worker.run()          # blocks; SIGTERM/SIGINT (or worker.stop()) ends it cleanly

Each thread claims from the listed queues in order (the first queue with a ready message wins,
and the sweep starts again from the first after every message), calls the handler, and lets the
claim acknowledge the message when the handler returns or record the failure when it raises.
When every queue is empty the thread waits `idle_min` seconds, doubling up to `idle_max`, or
until the queue's doorbell rings (a push from any process, mqlite/wake.py): milliseconds; the
first message found resets the wait.

Stopping (first SIGTERM/SIGINT, `stop()`, `max_messages`, `max_seconds`, or an empty sweep with
`until_empty`): no new claim is made, the messages in hand are finished and acknowledged, and
`run()` returns within `stop_timeout` seconds. A second signal exits the process at once; its
claims come back to the queue by recovery (the session that owned them is gone).

`mqlite.command.command_handler(cmd)` makes a handler that runs a shell command per message
(`mqlite consume`); it is importable from here too.

`Worker(…, scheduler=True)` also ticks the table's recurring schedules (scheduler.py) on a thread
of its own while it runs: any number of workers may, each tick is pushed once.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from . import registry
from .config import DEFAULT_LEASE, check_queue
from .errors import Cancelled, Interrupted, MqliteError, NotClaimed
from .idle import IdleWait
from .message import Message

log = logging.getLogger("mqlite.worker")

Handler = Callable[[Message], Any]

_ERROR_TEXT_MAX = 500  # characters of an exception message in a log line
_PRUNE_AFTER = 6  # heartbeat intervals of silence after which a registered worker is pruned
_PREFETCH_MAX = 1000  # messages one thread may claim at once (take_many's bound)


@dataclass(frozen=True)
class WorkerResult:
    """What one `run()` did, and why it ended.

    `reason`: "stopped" (stop()), "signal", "empty" (until_empty), "max_messages", "max_seconds",
    or "crashed" (an unexpected error in the loop, logged with its traceback). With
    `stop_on_error`, a library error (server gone, schema missing) stops the worker and `run()`
    raises it instead of returning.
    `abandoned`: messages still inside the handler when `stop_timeout` ran out; they stay
    claimed and come back by recovery once this process is gone.
    """

    processed: int
    failed: int
    errors: int
    abandoned: int
    reason: str

    @property
    def clean(self) -> bool:
        """Every message taken was finished, and the loop did not crash."""
        return self.abandoned == 0 and self.reason != "crashed"


class Worker:
    """Claims messages from `queues` (in order of priority) and calls `handler` with each.

    `handler(message)` returning acknowledges the message; raising records a failure (the
    claim's rules: released, or retried with backoff and kept as failed after max attempts).
    A handler may acknowledge in its own transaction instead, so that its writes and the
    acknowledgement commit together (`message.ack(connection=conn)`, last before its commit):
    the worker then does not acknowledge again.
    Thread-safe `stop()`; `run()` blocks until the worker has stopped.
    """

    def __init__(
        self,
        queue: Any,
        queues: Sequence[str],
        handler: Handler,
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
        prefetch: int = 1,
        scheduler: bool = False,
    ) -> None:
        if isinstance(queues, str):
            queues = [queues]
        if not queues:
            raise ValueError("a Worker needs at least one queue")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not 0 < idle_min <= idle_max:
            raise ValueError("need 0 < idle_min <= idle_max")
        if max_messages is not None and max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or not 1 <= prefetch <= _PREFETCH_MAX:
            raise ValueError(f"prefetch must be a whole number from 1 to {_PREFETCH_MAX}")
        self.queue = queue
        self._bell = getattr(queue, "doorbell", None)  # a Queue's (duck-typed stand-ins may have none)
        self.queues = [check_queue(name) for name in queues]
        self.handler = handler
        self.concurrency = concurrency
        self.idle_min = idle_min
        self.idle_max = idle_max
        self.stop_timeout = stop_timeout
        self.max_messages = max_messages
        self.max_seconds = max_seconds
        self.until_empty = until_empty
        self.handle_signals = handle_signals
        self.stop_on_error = stop_on_error
        self._error: MqliteError | None = None
        self.lease = lease
        self.heartbeat_every = heartbeat_every
        self.prefetch = prefetch
        self.scheduler = scheduler
        self._worker_id: int | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._reason = ""
        self._signalled = False
        self._taken = 0
        self._counts = {"processed": 0, "failed": 0, "errors": 0}
        self._in_hand: dict[int, Message] = {}
        self._deadline: float | None = None
        self._started = False

    # -- control ------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to stop: no new claims; messages in hand are finished. Returns at once."""
        self._request_stop("stopped")

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _request_stop(self, reason: str) -> None:
        with self._lock:
            if not self._reason:
                self._reason = reason
        self._stop.set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._signalled:
            log.warning("%s again: exiting now; claims in hand come back by recovery", name)
            logging.shutdown()
            os._exit(128 + signum)
        self._signalled = True
        with self._lock:
            in_hand = len(self._in_hand)
        log.warning(
            "%s received: finishing %d message(s) in hand, then exiting (send it again to exit at once)", name, in_hand
        )
        self._request_stop("signal")

    # -- running ------------------------------------------------------------------

    def run(self) -> WorkerResult:
        """Run until stopped; returns what was done. Raises MqliteError if the queues cannot be read at all.

        A Worker runs once; build another to run again.
        """
        if self._started:
            raise RuntimeError("this Worker has already run; build a new one")
        self._started = True
        for name in self.queues:
            self.queue.size(name)  # fail fast on a bad DSN, a missing schema or a bad name
        self._deadline = None if self.max_seconds is None else time.monotonic() + self.max_seconds
        log.info(
            "pid %d consuming %s from %s, table %s, %d thread(s)", os.getpid(), ", ".join(self.queues),
            self.queue.settings.redacted(), self.queue.table, self.concurrency,
        )
        previous: dict[int, Any] = {}
        if self.handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, self._on_signal)
        self._register()
        heartbeat = _Heartbeat(self, min(self.lease / 3, self.heartbeat_every))
        threads = [
            threading.Thread(target=self._loop, name=f"mqlite-worker-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        try:
            for t in threads:
                t.start()
            heartbeat.start()
            if self.scheduler:
                from . import scheduler

                threads.append(scheduler.start(self.queue, self._stop))
            while not self._stop.is_set():
                # Wake now and then even without news: a signal handler runs between waits.
                self._stop.wait(0.5)
            if self._bell is not None:
                self._bell.interrupt_waiters()  # threads asleep on the bell stop waiting
            deadline = time.monotonic() + self.stop_timeout
            for t in threads:
                # Short joins: a signal delivered to another thread does not interrupt a long one,
                # and the main thread must stay free to run the second-signal handler.
                while t.is_alive() and (left := deadline - time.monotonic()) > 0:
                    t.join(min(0.2, left))
        finally:
            heartbeat.stop()
            self._unregister()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        with self._lock:
            abandoned = len(self._in_hand)
            counts = dict(self._counts)
            reason = self._reason
        if abandoned:
            log.warning(
                "%d message(s) still in the handler after %gs: leaving them claimed (they come back by recovery)",
                abandoned, self.stop_timeout,
            )
        log.info("stopped (%s): %d processed, %d failed", reason, counts["processed"], counts["failed"])
        if self._error is not None:
            raise self._error
        return WorkerResult(counts["processed"], counts["failed"], counts["errors"], abandoned, reason)

    def _loop(self) -> None:
        idle = IdleWait(self.idle_min, self.idle_max, bell=self._bell, queues=self.queues)
        try:
            while not self._stop.is_set():
                if self._deadline is not None and time.monotonic() >= self._deadline:
                    self._request_stop("max_seconds")
                    break
                try:
                    found = self._sweep()
                except MqliteError as exc:
                    self._count("errors")
                    if self.stop_on_error:
                        self._error = exc
                        self._request_stop("error")
                        break
                    log.warning("cannot consume: %s: %s (retrying in %gs)", type(exc).__name__, _one_line(exc),
                                self.idle_max)
                    self._stop.wait(self.idle_max)
                    continue
                if found is not None:
                    if found:
                        idle.reset()  # after work, look again at once; after a failure, keep backing off
                    continue
                if self.until_empty:
                    self._request_stop("empty")
                    break
                idle.wait(self._stop, limit=None if self._deadline is None else self._deadline - time.monotonic())
        except BaseException:
            log.exception("worker thread crashed")
            self._request_stop("crashed")

    def _sweep(self) -> bool | None:
        """Claim from the queues in order; handle the first message found.

        True: a message was handled; False: it failed, or the worker is stopping; None: all queues were empty.
        """
        if self.prefetch > 1:
            return self._sweep_batch()
        for name in self.queues:
            if self._stop.is_set():
                return False
            if not self._reserve():
                self._request_stop("max_messages")
                return False
            block = self.queue.claim(name, lease=self.lease, interrupt=self._stop)
            try:
                message = block.__enter__()
            except BaseException:
                self._unreserve()
                raise
            if message is None:
                self._unreserve()
                block.__exit__(None, None, None)
                continue
            return self._handle(block, message)
        return None

    def _handle(self, block: Any, message: Message) -> bool:
        with self._lock:
            self._in_hand[id(message)] = message
        try:
            try:
                self.handler(message)
            except Cancelled as exc:
                # Queue.cancel marked it and the handler checked in: it has ended, cancelled.
                _exit_block(block, exc)
                log.info("message %s of queue %r cancelled while running; ended", message.id, message.queue)
                return False
            except Interrupted as exc:
                # The handler saved a checkpoint while we are stopping: released at once, to resume
                # elsewhere from its cursor.
                _exit_block(block, exc)
                log.info("message %s of queue %r interrupted at its checkpoint; released", message.id, message.queue)
                return False
            except Exception as exc:
                self._count("failed")
                log.warning(
                    "message %s of queue %r failed (attempt %d): %s: %s",
                    message.id, message.queue, attempt_number(message), type(exc).__name__, _one_line(exc),
                )
                _exit_block(block, exc)  # records the failure with its traceback, retried after the backoff
                return False
            except BaseException as exc:
                _exit_block(block, exc)
                raise
            block.__exit__(None, None, None)  # acknowledges; raises MqliteError if it cannot
            if getattr(message._handle, "cancelled", False):  # ended by the heartbeat's touch, handler unaware
                return False
            self._count("processed")
            return True
        finally:
            with self._lock:
                self._in_hand.pop(id(message), None)

    # -- prefetch: a batch per claim, acknowledged together ------------------------

    def _sweep_batch(self) -> bool | None:
        """`_sweep` taking up to `prefetch` messages of the first queue with any (one claim), handled
        in order; those handled are acknowledged together after the batch (one statement)."""
        for name in self.queues:
            if self._stop.is_set():
                return False
            want = self._reserve(self.prefetch)
            if not want:
                self._request_stop("max_messages")
                return False
            try:
                batch = self.queue.take_many(name, want, lease=self.lease, interrupt=self._stop)
            except BaseException:
                self._unreserve(want)
                raise
            self._unreserve(want - len(batch))
            if batch:
                return self._handle_batch(batch)
        return None

    def _handle_batch(self, batch: list[Message]) -> bool:
        done: list[Message] = []
        ok = True
        taken_at = time.monotonic()
        i = 0
        try:
            for i, message in enumerate(batch):
                if self._stop.is_set() and self._reason != "empty":
                    # Stopping: what was not started goes back at once (no attempt counted). Not
                    # when another thread found the queues empty: this batch is what was left.
                    self._give_back(batch[i:])
                    return False
                if time.monotonic() - taken_at > self.lease / 3:
                    self._renew(batch[i:])  # slow handlers: the rest of the batch keeps its claims
                    taken_at = time.monotonic()
                if self._handle(_Deferred(self.queue, message, done), message):
                    continue
                ok = False
        except BaseException:
            self._give_back(batch[i + 1:])
            raise
        finally:
            if done:
                self.queue.ack_many(done)  # a claim lost meanwhile is left alone (delivered again)
        return ok

    def _give_back(self, messages: list[Message]) -> None:
        self._unreserve(len(messages))
        for m in messages:
            try:
                self.queue.release(m)
            except MqliteError as exc:  # it comes back by recovery
                log.warning("message %s: could not give back an unstarted message: %s", m.id, _one_line(exc))

    def _renew(self, messages: list[Message]) -> None:
        for m in messages:
            try:
                m.touch()
            except MqliteError:
                pass  # lost: delivered again elsewhere; acknowledging it later is a no-op

    # -- bookkeeping --------------------------------------------------------------

    def _reserve(self, n: int = 1) -> int:
        """Reserve up to `n` messages of the max_messages budget; returns how many (0: none left)."""
        with self._lock:
            if self.max_messages is not None:
                n = min(n, self.max_messages - self._taken)
            n = max(n, 0)
            self._taken += n
            return n

    def _unreserve(self, n: int = 1) -> None:
        with self._lock:
            self._taken -= n

    def _count(self, what: str) -> None:
        with self._lock:
            self._counts[what] += 1

    def in_hand(self) -> list[Message]:
        """The messages inside the handler right now."""
        with self._lock:
            return list(self._in_hand.values())

    # -- the worker registry --------------------------------------------------------

    def _register(self) -> None:
        try:
            self._worker_id = self.queue._registry(registry.register, self.queues)
        except MqliteError as exc:  # the registry is for operators: never a reason not to consume
            log.warning("cannot register in the worker registry: %s", _one_line(exc))

    def beat(self) -> None:
        """Record this worker as alive, with the messages in hand and its counts."""
        if self._worker_id is None:
            return
        with self._lock:
            current = sorted(m.id for m in self._in_hand.values())
            counts = dict(self._counts)
        try:
            self.queue._registry(registry.heartbeat, self._worker_id, current, counts["processed"],
                                 counts["failed"], _PRUNE_AFTER * self.heartbeat_every)
        except MqliteError as exc:
            log.warning("cannot heartbeat: %s", _one_line(exc))

    def _unregister(self) -> None:
        if self._worker_id is not None:
            try:
                self.queue._registry(registry.unregister, self._worker_id)
            except MqliteError as exc:
                log.warning("cannot unregister (it will be pruned): %s", _one_line(exc))


class _Heartbeat:
    """Every `interval` seconds: renews the lease of every message in hand, and heartbeats the registry."""

    def __init__(self, worker: Worker, interval: float) -> None:
        self.worker = worker
        self.interval = max(0.5, interval)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mqlite-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()

    def _run(self) -> None:
        while not self._done.wait(self.interval):
            self.worker.beat()
            for message in self.worker.in_hand():
                try:
                    message.touch()
                except NotClaimed:
                    pass  # settled between the listing and the touch
                except Cancelled:  # ended, cancelled: its handler is told at its next check-in
                    log.info("message %s of queue %r: cancelled while running", message.id, message.queue)
                except Exception as exc:
                    log.warning("cannot extend the lease of message %s: %s", message.id, _one_line(exc))


class _Deferred:
    """A claim block for one message of a batch: settles failures at once, defers the ack to `done`."""

    def __init__(self, queue: Any, message: Message, done: list[Message]) -> None:
        self.queue, self.message, self.done = queue, message, done

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        m, handle = self.message, self.message._handle
        if exc is None:
            if not handle.finished:
                self.done.append(m)
        elif not handle.finished:
            if isinstance(exc, Exception):
                self.queue.nack(m, exc)
            else:
                self.queue.release(m)
        elif handle.in_transaction:  # acknowledged in the handler's transaction, maybe rolled back
            self.queue._nack_if_rolled_back(m, exc)


def _exit_block(block: Any, exc: BaseException) -> None:
    """Leave a claim block as if `exc` had been raised inside it (the claim releases or records it)."""
    block.__exit__(type(exc), exc, exc.__traceback__)


def attempt_number(message: Message) -> int:
    """Which attempt at this message is running now: 1 for the first delivery."""
    return message.attempts + 1


def _one_line(exc: BaseException) -> str:
    text = " | ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text if len(text) <= _ERROR_TEXT_MAX else text[: _ERROR_TEXT_MAX - 1] + "…"


def __getattr__(name: str) -> Any:
    # `command_handler` and `CommandFailed` lived here: still importable from here, loaded only when asked.
    if name in ("command_handler", "CommandFailed"):
        from . import command

        return getattr(command, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
