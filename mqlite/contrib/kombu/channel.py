"""The kombu Channel: publishing, batch claims, acknowledgements over mqlite queues."""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import wait
from queue import Empty
from time import monotonic
from typing import Any

from kombu.transport import virtual
from kombu.utils.json import dumps, loads

from ...errors import Cancelled, MqliteError, NotClaimed
from ...message import Message as MqMessage
from ...queue import Queue
from .routing import RoutingChannel
from .shared import Claim, delay_of, priority_of

log = logging.getLogger("mqlite.kombu")


class Channel(RoutingChannel, virtual.Channel):
    """A kombu channel whose queues are mqlite queues; exchanges and expiry in routing.py."""

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self._routing_init()
        self._noack_queues: set[str] = set()
        self._lock = threading.Lock()
        self._held: dict[str, Claim] = {}  # by delivery tag
        # Claimed in a batch, not handed to kombu yet.
        self._buffers: dict[str, deque[Claim]] = {}
        # Queues whose last claim found messages: claimed in batches. The others are probed with a
        # single take (an idle consumer costs one claim per poll, not a batch of them).
        self._busy: set[str] = set()
        self._refills: dict[str, Any] = {}  # queue -> Future of the batch claim in flight
        self._refill_errors: dict[str, BaseException] = {}
        self._closing = False

    @property
    def mq(self) -> Queue:
        return self.connection.mq

    def _name(self, queue: str) -> str:
        return self.connection.queue_prefix + queue

    # -- producing ---------------------------------------------------------------

    def _put(self, queue: str, message: dict, **kwargs: Any) -> None:
        delay = delay_of(message)
        self.mq.push(self._name(queue), dumps(message), delay=delay, priority=priority_of(message))

    def _purge(self, queue: str) -> int:
        return self.mq.purge(self._name(queue))

    def _size(self, queue: str) -> int:
        return self.mq.size(self._name(queue))

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        return True  # every queue name exists in mqlite (empty until something is pushed)

    # -- consuming ---------------------------------------------------------------

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        if no_ack:
            self._noack_queues.add(queue)
        self.connection.recover_once()
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def basic_cancel(self, consumer_tag: str) -> Any:
        queue = self._tag_to_queue.get(consumer_tag)
        result = super().basic_cancel(consumer_tag)
        if queue is not None and queue not in self._active_queues:
            self._noack_queues.discard(queue)
            self._release_buffer(queue)
        return result

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        try:
            message = self.Message(self._get(queue, no_ack=no_ack, batch=False), channel=self)
        except Empty:
            return None
        if not no_ack:
            self.qos.append(message, message.delivery_tag)
        return message

    def _get(self, queue: str, timeout: float | None = None, no_ack: bool | None = None, batch: bool = True) -> dict:
        if no_ack is None:
            no_ack = queue in self._noack_queues
        while True:
            if no_ack:
                m = self.mq.pop(self._name(queue))
                if m is None:
                    raise Empty()
                payload = self._payload(m, None)
            else:
                claim = self._next_claimed(queue, batch)
                if claim is None:
                    raise Empty()
                payload = self._payload(claim.message, claim)
            if payload is not None:
                return payload

    def _next_claimed(self, queue: str, batch: bool) -> Claim | None:
        """The next claimed message of `queue`: from this channel's buffer, else from a batch claim.

        While the consumer works through a batch, the next one is claimed in the background (one
        batch in flight per queue), so claim latency overlaps with delivery. A batch is at most
        the prefetch window left (capped by `claim_batch`); buffered and in-flight messages are
        renewed and released like delivered ones.
        """
        if not batch:  # basic_get: one message, claimed in this thread
            with self._lock:
                buffered = self._buffers.get(queue)
                if buffered:
                    return buffered.popleft()
            got = self._hold(self.connection.take_many(self._name(queue), 1))
            return got[0] if got else None
        while True:
            with self._lock:
                buffered = self._buffers.setdefault(queue, deque())
                refill = self._refills.get(queue)
                if buffered:
                    claim = buffered.popleft()
                    if refill is None and queue in self._busy:
                        want = self._window() - len(buffered)
                        if want > len(buffered):  # half of the batch is gone: claim the next one
                            self._refills[queue] = self.connection.submit_refill(self._refill, queue, want)
                    return claim
                if refill is None:
                    want = self._window() if queue in self._busy else 1
                    refill = self._refills[queue] = self.connection.submit_refill(self._refill, queue, want)
            refill.result()
            with self._lock:
                if not self._buffers.get(queue):
                    error = self._refill_errors.pop(queue, None)
                    if error is not None:
                        raise error
                    return None

    def _window(self) -> int:
        window = self.qos.can_consume_max_estimate()  # prefetch left; None when unlimited
        cap = self.connection.claim_batch
        return max(1, cap if window is None else min(cap, window))

    def _hold(self, messages: list[MqMessage]) -> list[Claim]:
        renew_at = monotonic() + self.connection.lease / 3
        claims = [Claim(m, renew_at) for m in messages]
        with self._lock:
            for c in claims:
                self._held[c.tag] = c
        return claims

    def _refill(self, queue: str, want: int) -> None:
        """Claim up to `want` messages into the buffer (runs in the transport's refill thread)."""
        got: list[MqMessage] = []
        error: BaseException | None = None
        try:
            got = self.connection.take_many(self._name(queue), want)
        except Exception as exc:
            error = exc
        claims = self._hold(got)
        with self._lock:
            del self._refills[queue]
            if error is not None:
                self._refill_errors[queue] = error  # raised by the consumer when its buffer runs dry
            else:
                self._refill_errors.pop(queue, None)
            wanted = not (self.closed or self._closing) and queue in self._active_queues
            if wanted:
                self._buffers.setdefault(queue, deque()).extend(claims)
            if got:
                self._busy.add(queue)
            elif error is None:
                self._busy.discard(queue)
        if not wanted:  # the consumer went away meanwhile
            self._give_back(claims)

    def _payload(self, m: MqMessage, claim: Claim | None) -> dict | None:
        try:
            payload = loads(m.body)
            properties = payload["properties"]
        except (ValueError, TypeError, KeyError):
            # Pushed by something other than kombu: not ours to deliver, and it must not loop.
            if claim is not None:
                self._settled(claim.tag)
                self.mq.fail(m, "not a kombu message (body is not a kombu JSON payload)")
            log.error("mqlite: message %s on queue %r is not a kombu message; %s", m.id, m.queue,
                      "kept as failed" if claim is not None else "dropped (no_ack)")
            return None
        info = properties.setdefault("delivery_info", {})
        info["redelivered"] = bool(m.attempts) or bool(payload.get("redelivered"))
        if claim is not None:
            properties["delivery_tag"] = claim.tag
        return payload

    def _settled(self, tag: str) -> MqMessage | None:
        """Forget a claim this channel holds: its message, or None (no_ack, or already settled)."""
        with self._lock:
            claim = self._held.pop(tag, None)
        return None if claim is None else claim.message

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        m = self._settled(delivery_tag)
        if m is not None:
            self.connection.ack(m)
        super().basic_ack(delivery_tag, multiple=multiple)
        self.connection.wake()

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        m = self._settled(delivery_tag)
        if m is not None:
            if requeue:
                self.mq.nack(m, "rejected by the consumer (requeue)", delay=0)
            else:
                self.mq.fail(m, "rejected by the consumer")
            self.qos.reject(delivery_tag, requeue=False)
        else:
            super().basic_reject(delivery_tag, requeue=requeue)
        self.connection.wake()

    def _restore(self, message: Any) -> None:
        # kombu's restore of unacked messages (channel close, basic_recover): give the claim back.
        m = self._settled(message.delivery_tag)
        if m is not None:
            self.mq.release(m)
        else:
            super()._restore(message)

    def _release_buffer(self, queue: str | None = None) -> None:
        """Give back claimed messages never handed to kombu (consumer cancelled, channel closed)."""
        with self._lock:
            refills = list(self._refills.values()) if queue is None else [self._refills.get(queue)]
        wait([f for f in refills if f is not None], timeout=120)
        with self._lock:
            names = list(self._buffers) if queue is None else [queue]
            claims = [c for name in names for c in self._buffers.pop(name, ())]
        self._give_back(claims)

    def _give_back(self, claims: list[Claim]) -> None:
        if claims and self.connection is None:  # closed under us: nothing left to release with
            log.warning("mqlite: %d claims of a closed channel come back by recovery once this "
                        "process closes its claim sessions", len(claims))
            return
        for c in claims:
            m = self._settled(c.tag)
            if m is None:
                continue
            try:
                self.mq.release(m)
            except MqliteError as exc:
                log.warning("mqlite: could not release message %s (it comes back by recovery): %s", m.id, exc)

    def renew_leases(self, now: float) -> None:
        """Extend the claims held longer than a third of their lease (called from the consuming loop)."""
        lease = self.connection.lease
        with self._lock:
            due = [c for c in self._held.values() if c.renew_at <= now]
        for c in due:
            try:
                kept = self.mq.extend(c.message, lease)
            except NotClaimed:  # settled meanwhile
                continue
            except Cancelled:  # `Queue.cancel` ended it (deleted, recorded cancelled): nothing to ack later
                self._settled(c.tag)
                continue
            with self._lock:
                if c.tag not in self._held:
                    continue
                c.renew_at = now + lease / 3 if kept else float("inf")
            if not kept:
                log.warning("mqlite: claim of message %s was lost while held; it will be delivered again",
                            c.message.id)

    def close(self) -> None:
        if not self.closed:
            self._closing = True  # batch claims landing from now on are given back, not buffered
            self._release_buffer()
            super().close()  # cancels consumers and restores (releases) unacked messages
            with self._lock:
                self._held.clear()

