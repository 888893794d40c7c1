"""The kombu Transport: one shared mqlite.Queue, batched claims and background acks, the polling loop."""

from __future__ import annotations

import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from queue import Empty
from time import monotonic
from typing import Any

from kombu.transport import virtual

from ...config import parse_dsn
from ...errors import DatabaseError, MqliteError, SchemaMissing, Unavailable
from ...idle import IdleWait
from ...message import Message as MqMessage
from ...queue import Queue
from .channel import Channel
from .routing import Routing
from .shared import Shared, dsn_of

log = logging.getLogger("mqlite.kombu")

DEFAULT_LEASE = 600.0
DEFAULT_CLAIM_BATCH = 16  # most claims per batch (the prefetch window limits it further)
DEFAULT_ACK_THREADS = 1  # 0: acks in the caller's thread; else one thread sends them in batches
MAX_PENDING_ACKS = 1000  # acks waiting for the background thread, at the most (one ack_many's worth)
ACKER_IDLE = 5.0  # seconds without acks before the background thread ends
# Idle, the reply and pidbox queues are polled this often even while task queues back off further:
# `celery inspect` waits 1 s for replies.
DEFAULT_BROADCAST_POLLING = 0.2
BROADCAST_SCHEMA = 10  # schema/010_kombu_broadcast.sql: the shared bindings and expiring queues
_QUEUE_OPTIONS = (
    "table", "pool_size", "max_attempts", "retry_for", "recover_every", "connect_timeout", "wake", "wake_bound",
)


class Transport(virtual.Transport):
    """kombu transport storing messages in an mqlite table (MySQL/MariaDB)."""

    Channel = Channel

    # The URL is mqlite's own DSN (mysql://user:pass@host:port/db?…); kombu must not split it.
    can_parse_url = True
    default_port = 3306  # type: ignore[assignment]  # kombu declares None
    driver_type = "mysql"
    driver_name = "mqlite"

    polling_interval = 1.0  # the longest idle sleep between polling rounds
    min_polling_interval = 0.01  # the first one, doubled after each empty round

    connection_errors = virtual.Transport.connection_errors + (Unavailable,)  # type: ignore[assignment]
    channel_errors = virtual.Transport.channel_errors + (DatabaseError,)  # type: ignore[assignment]

    implements = virtual.Transport.implements.extend(
        asynchronous=False, exchange_type=frozenset(["direct", "topic", "fanout"]), heartbeats=False,
    )

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        opts = client.transport_options
        self.lease = float(opts.get("lease", DEFAULT_LEASE))
        if not self.lease > 0:
            raise ValueError("the mqlite transport's lease must be a positive number of seconds")
        self.queue_prefix = str(opts.get("queue_prefix", ""))
        if opts.get("min_polling_interval") is not None:
            self.min_polling_interval = float(opts["min_polling_interval"])
        self.claim_batch = int(opts.get("claim_batch", DEFAULT_CLAIM_BATCH))
        self.ack_threads = int(opts.get("ack_threads", DEFAULT_ACK_THREADS))
        if self.claim_batch < 1 or self.ack_threads < 0:
            raise ValueError("the mqlite transport needs claim_batch >= 1 and ack_threads >= 0")
        self._queue_options = {k: opts[k] for k in _QUEUE_OPTIONS if k in opts}
        self._dsn = dsn_of(client.hostname)
        self._mq: Queue | None = None
        self._mq_lock = threading.Lock()
        self._refill_pool: ThreadPoolExecutor | None = None
        self._pools_lock = threading.Lock()
        self._acks: list[MqMessage] = []
        self._acks_sending = 0
        self._acks_cond = threading.Condition()
        self._acker: threading.Thread | None = None
        self._recovered = False
        longest = max(self.polling_interval or 0.0, self.min_polling_interval)
        self._idle = IdleWait(self.min_polling_interval, longest)
        self._wakeup = threading.Event()
        self._next_renewal = 0.0
        self.routing = Routing(self)
        self.broadcast_polling_interval = float(opts.get("broadcast_polling_interval", DEFAULT_BROADCAST_POLLING))

    @property
    def mq(self) -> Queue:
        mq = self._mq
        if mq is None:
            with self._mq_lock:
                if self._mq is None:
                    self._mq = Shared.acquire(self._dsn, self._queue_options)
                mq = self._mq
        return mq

    def establish_connection(self) -> Any:
        # Fails here, as a connection error, when the server is unreachable.
        status = self.mq.schema_status()
        if any(m.version == BROADCAST_SCHEMA for m in status.pending):
            raise SchemaMissing(f"the kombu transport keeps its exchanges in schema {BROADCAST_SCHEMA:03d}, "
                                f"not applied to table {status.table!r}: run `mqlite schema apply`")
        return super().establish_connection()

    def close_connection(self, connection: Any) -> None:
        try:
            super().close_connection(connection)  # closes channels, which release unacked claims
        finally:
            self.flush_acks()
            with self._pools_lock:
                pool, self._refill_pool = self._refill_pool, None
            if pool is not None:
                pool.shutdown(wait=True)
            with self._mq_lock:
                mq, self._mq = self._mq, None
            if mq is not None:
                Shared.release(mq)

    # -- claiming in batches, acknowledging in the background ---------------------------------

    def _pool(self) -> ThreadPoolExecutor:
        with self._pools_lock:
            if self._refill_pool is None:
                self._refill_pool = ThreadPoolExecutor(2, thread_name_prefix="mqlite-refill")
            return self._refill_pool

    def submit_refill(self, fn: Any, queue: str, want: int) -> Any:
        return self._pool().submit(fn, queue, want)

    def take_many(self, queue: str, want: int) -> list[MqMessage]:
        """Claim up to `want` messages of `queue` (mqlite queue name), oldest first: one claim."""
        return self.mq.take_many(queue, want, lease=self.lease)

    def ack(self, message: MqMessage) -> None:
        """Acknowledge in the background (as AMQP does: an ack is not waited for): one thread sends
        the acks that arrived meanwhile as one `ack_many`. Bounded: a caller waits while
        `MAX_PENDING_ACKS` are pending. `ack_threads=0` acknowledges in the caller's thread. An ack
        lost with its process leaves the claim to recovery: the message runs again."""
        if not self.ack_threads:
            self.mq.ack(message)
            return
        with self._acks_cond:
            self._acks_cond.wait_for(lambda: len(self._acks) < MAX_PENDING_ACKS)
            self._acks.append(message)
            if self._acker is None or not self._acker.is_alive():
                self._acker = threading.Thread(target=self._send_acks, name="mqlite-ack", daemon=True)
                self._acker.start()
            self._acks_cond.notify_all()

    def _send_acks(self) -> None:
        while True:
            with self._acks_cond:
                if not self._acks_cond.wait_for(lambda: self._acks, timeout=ACKER_IDLE):
                    self._acker = None  # idle: a later ack starts another
                    return
                batch, self._acks = self._acks, []
                self._acks_sending = len(batch)
                self._acks_cond.notify_all()
            try:
                self.mq.ack_many(batch)
            except Exception as exc:
                log.error("mqlite: acks of %d messages failed (they will be delivered again): %s", len(batch), exc)
            finally:
                with self._acks_cond:
                    self._acks_sending = 0
                    self._acks_cond.notify_all()

    def flush_acks(self, timeout: float | None = 60.0) -> None:
        """Wait for the acks sent in the background."""
        with self._acks_cond:
            self._acks_cond.wait_for(lambda: not self._acks and not self._acks_sending, timeout)

    def recover_once(self) -> None:
        """Put back claims of dead consumers when a consumer starts (a restarted worker gets its
        predecessor's messages at once instead of at the next opportunistic recovery)."""
        if self._recovered:
            return
        self._recovered = True
        try:
            self.mq.recover()
        except MqliteError as exc:
            log.warning("mqlite: recovery at consumer start failed: %s", exc)

    def _consumed(self) -> tuple[str, ...]:
        """The mqlite names of the queues this connection's channels consume."""
        return tuple(sorted({ch._name(q) for ch in list(self.channels) for q in list(ch._active_queues)}))

    def wake(self) -> None:
        self._wakeup.set()
        self._idle.interrupt()  # a sleep on the doorbell does not watch `_wakeup`

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:  # type: ignore[override]
        """Deliver one message; poll with a bounded exponential backoff while there is none."""
        start = monotonic()
        while True:
            now = monotonic()
            if now >= self._next_renewal:
                self._next_renewal = now + min(5.0, self.lease / 6)
                for channel in list(self.channels):
                    channel.renew_leases(now)
            for channel in list(self.channels):
                channel.keep_alive(now)
            self.routing.sweep()
            assert self.cycle is not None  # set by kombu when the connection is established
            try:
                self.cycle.get(self._deliver, timeout=timeout)
            except Empty:
                elapsed = monotonic() - start
                if timeout is not None and elapsed >= timeout:
                    raise socket.timeout() from None
                pause = self._idle.pause(None if timeout is None else timeout - elapsed)
                # Rung by pushes to the queues consumed now, from any process (mqlite/wake.py).
                self._idle.bell, self._idle.queues = self.mq.doorbell, self._consumed()
                delivered = self._wait_polling_control(pause)
                self._wakeup.clear()
                if delivered:
                    return
            else:
                self._idle.reset()
                return

    def _wait_polling_control(self, pause: float) -> bool:
        """Sleep `pause` (ended early by `wake`), polling the consumed control queues (reply and
        pidbox queues) every `broadcast_polling_interval` meanwhile; True once one delivered."""
        deadline = monotonic() + pause
        while True:
            control = [(ch, q) for ch in list(self.channels) for q in ch.control_queues()]
            left = deadline - monotonic()
            step = min(left, self.broadcast_polling_interval) if control else left
            if self._idle.sleep(max(0.0, step), self._wakeup) or left <= step:
                return False
            for channel, queue in control:
                if queue not in channel._noack_queues and not channel.qos.can_consume():
                    continue
                try:
                    channel._get_and_deliver(queue, self._deliver)
                except Empty:
                    continue
                return True

    def driver_version(self) -> str:
        from ... import __version__

        return __version__

    @classmethod
    def as_uri(cls, uri: str, include_password: bool = False, mask: str = "**") -> str:
        if include_password or "://" not in uri:
            return uri
        try:
            return parse_dsn(uri).redacted()
        except MqliteError:
            return "mysql://<unparsable DSN>"

