"""`MqliteBroker`: a Dramatiq broker over `mqlite.Queue`.

    import dramatiq
    from mqlite.contrib.dramatiq import MqliteBroker

    dramatiq.set_broker(MqliteBroker("mysql://user:pw@db:3306/app"))   # or MqliteBroker() for MQLITE_DSN

Run `mqlite schema apply` once, as for any mqlite use. How Dramatiq's verbs map onto mqlite (one
mqlite queue per Dramatiq queue, same name, optionally prefixed):

- `enqueue(message, delay=ms)`: `Queue.push(…, delay=ms / 1000)`. Delayed messages (`send_with_
  options(delay=…)`, and the Retries middleware's backoff) wait in the table, hidden until due:
  no `.DQ` delay queue, so no worker holds them in memory and no consumer polls for them: an idle
  consumer sleeps on the queue's doorbell (mqlite/wake.py), rung by pushes from any process and
  by the listener when a delayed message falls due (a 100 ms retry runs after about 100 ms).
- An actor's `priority` (lower first, as in Dramatiq) is the mqlite priority of its messages:
  across the whole queue, not only among the messages one worker has prefetched.
- consume: `Queue.take_many(lease=…)`, as many as the consumer's `prefetch` leaves room for, in
  one claim; at most `prefetch` messages unacknowledged (delivered or waiting) per consumer.
  `ack` -> `Queue.ack`; `nack` (Dramatiq's dead letter: retries exhausted, or an actor that
  raised an exception listed in `throws`) -> `Queue.fail` with the actor's exception and its
  traceback, kept as failed (`q.peek(queue, failed=True)`, `q.retry_failed(queue)`); `requeue`
  (worker shutdown) -> `Queue.release`, no attempt counted.
- A worker that dies (SIGKILL, OOM) leaves its claims to mqlite's recovery: they come back
  by themselves (with the PROCESS privilege, as soon as a consumer finds a queue empty or at
  most every `6 * recover_every` seconds; without it, when their lease runs out).
- Messages held unacknowledged longer than a third of `lease` are renewed by their consumer,
  so a long actor (Dramatiq's default time limit is 10 minutes) keeps its claim.
- `flush`/`flush_all`: `Queue.purge` (ready and delayed messages; claimed ones finish).
- `join(queue)`: waits until the queue has nothing ready, delayed or claimed (for tests).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import dramatiq
from dramatiq.broker import Consumer, MessageProxy
from dramatiq.common import q_name
from dramatiq.errors import ConnectionClosed, DecodeError, QueueJoinTimeout
from dramatiq.message import Message

from ..config import PRIORITY_MAX, PRIORITY_MIN
from ..errors import Cancelled, MqliteError, NotClaimed, Unavailable
from ..idle import IdleWait
from ..message import Message as MqMessage
from ..queue import Queue

log = logging.getLogger("mqlite.dramatiq")

DEFAULT_LEASE = 600.0
_MIN_POLL = 0.01  # seconds: the first idle sleep, doubled up to the consumer's timeout
_MAX_CLAIM = 64  # messages claimed at once, at the most (Dramatiq's default prefetch is 2 x threads)


class MqliteBroker(dramatiq.Broker):
    """A Dramatiq broker storing messages in an mqlite table (MySQL/MariaDB).

    `dsn=None` reads `MQLITE_DSN`; `**queue_kwargs` go to `mqlite.Queue` (table, pool_size,
    max_attempts, retry_for, recover_every, …). Or pass `queue=` an existing `mqlite.Queue`
    (then closing the broker leaves it open). `lease` is the claim's lease in seconds and
    `queue_prefix` is prepended to every queue name in the table.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        middleware: list[dramatiq.Middleware] | None = None,
        queue: Queue | None = None,
        lease: float = DEFAULT_LEASE,
        queue_prefix: str = "",
        **queue_kwargs: Any,
    ) -> None:
        super().__init__(middleware=middleware)
        if queue is not None and (dsn is not None or queue_kwargs):
            raise ValueError("give queue= or a dsn and Queue options, not both")
        if not lease > 0:
            raise ValueError("lease must be a positive number of seconds")
        self.mq = queue if queue is not None else Queue(dsn, **queue_kwargs)
        self._owns_queue = queue is None
        self.lease = float(lease)
        self.queue_prefix = queue_prefix
        self.queues: set[str] = set()

    def __repr__(self) -> str:
        return f"MqliteBroker({self.mq!r})"

    def table_queue(self, queue_name: str) -> str:
        """The mqlite queue that holds Dramatiq's `queue_name`."""
        return self.queue_prefix + q_name(queue_name)

    def close(self) -> None:
        if self._owns_queue:
            self.mq.close()

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Consumer:
        """A consumer of `queue_name`: at most `prefetch` unacked messages; idles at most `timeout` ms."""
        return _MqliteConsumer(self, queue_name, prefetch, timeout)

    def declare_queue(self, queue_name: str) -> None:
        """Declare a queue (idempotent). No delay queue: mqlite delays messages in the table."""
        if queue_name not in self.queues:
            self.emit_before("declare_queue", queue_name)
            self.queues.add(queue_name)
            self.emit_after("declare_queue", queue_name)

    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        """Push `message`; with `delay` (milliseconds) it is hidden in the table until then."""
        queue_name = q_name(message.queue_name)
        if queue_name != message.queue_name:
            message = message.copy(queue_name=queue_name)
        if "eta" in message.options:  # a worker would hold it in memory: the table delays it instead
            message = message.copy(options={k: v for k, v in message.options.items() if k != "eta"})
        seconds = None if delay is None else max(0.0, delay / 1000)
        self.emit_before("enqueue", message, delay)
        try:
            self.mq.push(self.table_queue(queue_name), message.encode(), delay=seconds,
                         priority=self._priority_of(message))
        except Unavailable as exc:
            raise ConnectionClosed(exc) from None
        self.emit_after("enqueue", message, delay)
        return message

    def _priority_of(self, message: Message) -> int:
        """The priority of the message's actor (0 when this process does not know the actor)."""
        actor = self.actors.get(message.actor_name)
        value = getattr(actor, "priority", 0)
        if isinstance(value, bool) or not isinstance(value, int):
            return 0
        return max(PRIORITY_MIN, min(PRIORITY_MAX, value))

    def get_declared_queues(self) -> set[str]:
        return self.queues.copy()

    def flush(self, queue_name: str) -> None:
        """Drop the ready and delayed messages of a queue (claimed ones are left to finish)."""
        self.mq.purge(self.table_queue(queue_name))

    def flush_all(self) -> None:
        for queue_name in self.queues:
            self.flush(queue_name)

    def join(self, queue_name: str, *, interval: int = 100, timeout: int | None = None) -> None:
        """Wait until `queue_name` has nothing ready, delayed or claimed (for tests).

        Raises QueueJoinTimeout after `timeout` milliseconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout / 1000
        name = self.table_queue(queue_name)
        while self.mq.peek(name, 1):
            if deadline is not None and time.monotonic() >= deadline:
                raise QueueJoinTimeout(queue_name)
            time.sleep(interval / 1000)


class _MqliteMessageProxy(MessageProxy):
    def __init__(self, message: Message, claim: MqMessage, consumer: _MqliteConsumer) -> None:
        super().__init__(message)
        self._claim = claim
        self._consumer = consumer


class _MqliteConsumer(Consumer):
    def __init__(self, broker: MqliteBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        self.broker = broker
        self.mq = broker.mq
        self.queue_name = queue_name
        self.table_queue = broker.table_queue(queue_name)
        self.prefetch = max(1, prefetch)
        self.timeout = timeout / 1000
        # Woken by a push to its queue from any process, and when a delayed message falls due.
        self._idle = IdleWait(_MIN_POLL, self.timeout, bell=self.mq.doorbell, queues=(self.table_queue,))
        self._cond = threading.Condition()
        self._held: dict[int, tuple[_MqliteMessageProxy, float]] = {}  # id -> (message, next renewal)
        self._ready: deque[_MqliteMessageProxy] = deque()  # claimed, held, not yet handed to Dramatiq
        self._next_renewal = 0.0

    def __next__(self) -> MessageProxy | None:
        self._renew_leases()
        if self._ready:
            return self._ready.popleft()
        with self._cond:
            room = self.prefetch - len(self._held)
            if room <= 0:
                self._cond.wait(self.timeout)  # until an ack frees a slot
                return None
        try:
            claims = self.mq.take_many(self.table_queue, min(room, _MAX_CLAIM), lease=self.broker.lease)
        except Unavailable as exc:
            raise ConnectionClosed(exc) from None
        if not claims:
            self._idle.wait()
            return None
        self._idle.reset()
        renew_at = time.monotonic() + self.broker.lease / 3
        for claim in claims:
            try:
                message = Message.decode(claim.body)
            except DecodeError as exc:
                log.error("mqlite: message %s on queue %r is not a Dramatiq message: %s", claim.id, claim.queue, exc)
                self.mq.fail(claim, f"not a Dramatiq message: {exc}")
                continue
            proxy = _MqliteMessageProxy(message, claim, self)
            with self._cond:
                self._held[claim.id] = (proxy, renew_at)
            self._ready.append(proxy)
        return self._ready.popleft() if self._ready else None

    def _done(self, message: MessageProxy) -> MqMessage:
        claim: MqMessage = message._claim  # type: ignore[attr-defined]
        owner: _MqliteConsumer = message._consumer  # type: ignore[attr-defined]
        with owner._cond:
            owner._held.pop(claim.id, None)
            owner._cond.notify_all()
        return claim

    def ack(self, message: MessageProxy) -> None:
        try:
            self.mq.ack(self._done(message))
        except NotClaimed:
            pass  # already settled
        except Unavailable as exc:
            raise ConnectionClosed(exc) from None

    def nack(self, message: MessageProxy) -> None:
        """Dramatiq's dead letter: the message becomes failed in mqlite, with the actor's error."""
        error: Any = message._exception or message.options.get("traceback") or "rejected by the worker"
        try:
            self.mq.fail(self._done(message), error)
        except NotClaimed:
            pass
        except Unavailable as exc:
            raise ConnectionClosed(exc) from None

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        """Give unacked messages back (worker shutdown): released, no attempt counted."""
        for message in messages:
            try:
                self.mq.release(self._done(message))
            except NotClaimed:
                pass
            except MqliteError as exc:
                log.warning("mqlite: could not release message %s (it comes back by recovery): %s",
                            message._claim.id, exc)  # type: ignore[attr-defined]

    def _renew_leases(self) -> None:
        now = time.monotonic()
        if now < self._next_renewal:
            return
        self._next_renewal = now + min(5.0, self.broker.lease / 6)
        with self._cond:
            due = [proxy for proxy, at in self._held.values() if at <= now]
        for proxy in due:
            claim = proxy._claim
            try:
                kept = self.mq.extend(claim, self.broker.lease)
            except NotClaimed:
                continue  # settled meanwhile
            except Cancelled:
                # `Queue.cancel` marked it: it has ended (deleted, recorded cancelled); the actor
                # runs on, and its ack finds nothing to settle.
                with self._cond:
                    if claim.id in self._held:
                        self._held[claim.id] = (proxy, float("inf"))
                continue
            except MqliteError as exc:
                log.warning("mqlite: could not renew the lease of message %s: %s", claim.id, exc)
                continue
            with self._cond:
                if claim.id not in self._held:
                    continue  # settled meanwhile
                self._held[claim.id] = (proxy, now + self.broker.lease / 3 if kept else float("inf"))
            if not kept:
                log.warning("mqlite: claim of message %s was lost while held; it will be delivered again", claim.id)

    def close(self) -> None:
        # Claimed in a batch but never handed to Dramatiq: back to the queue, no attempt counted.
        self.requeue(list(self._ready))
        self._ready.clear()
        with self._cond:
            self._cond.notify_all()
