"""A kombu virtual transport over `mqlite.Queue`: mqlite as Celery's broker.

Configuration, one line (see the README's "Using with Celery")::

    app = Celery("proj", broker="mysql://user:pw@db:3306/app",
                 broker_transport="mqlite.contrib.kombu:Transport")

kombu refuses import paths in a URL's scheme (they would let a URL choose a module to import),
so an out-of-tree transport is named by `broker_transport`, which every Celery process reads
from the app's configuration: no import side effect is needed in the worker, beat or `celery
purge`. Importing this module also registers the alias `mqlite`, so `broker="mqlite+mysql://…"`
works in processes that import `mqlite.contrib.kombu` before connecting. Without a URL
(`broker_url` unset), `MQLITE_DSN` is used. Run `mqlite schema apply` once, as for any mqlite use.

How kombu's verbs map onto mqlite (one mqlite queue per kombu queue, same name):

- publish: `Queue.push`, one `INSERT`. Celery's `countdown`/`eta` (the `eta` header) and a
  `DelaySeconds` property become mqlite delays: the message waits in the table, not in a worker.
- consume (`no_ack=False`, which is every Celery worker): `Queue.take(lease=…)`; the delivery tag
  is the claim's receipt. `basic_ack` -> `ack`; `basic_reject(requeue=True)` -> `nack` with no
  delay (back at once, one attempt counted, so a message that keeps killing its worker ends
  failed after `max_attempts` instead of looping); `basic_reject(requeue=False)` -> `fail`
  (kept in the failed state with the reason: mqlite's dead letter).
- unacked messages at a clean shutdown (kombu's restore): `release`, the same row, no attempt
  counted, no copy. A worker that dies (SIGKILL, OOM, power loss) restores nothing: its claims
  belong to its dead database sessions and come back by mqlite's recovery, which consumers run
  (a consumer also runs it once when it starts).
- `no_ack=True` consumers and `basic_get(no_ack=True)`: `Queue.pop` (at-most-once).
- purge: `Queue.purge` (ready and delayed messages; claimed ones finish).

Throughput on a server where every statement is a commit:
- claims are made in batches of up to the prefetch window left (`claim_batch`, default 16, caps
  it): that many `take` calls at once, which mqlite's group claim serves with a few statements;
  the next batch is claimed while the worker goes through the current one. An idle queue is
  probed with a single take. Buffered claims are renewed and released like delivered ones.
- acks go out in the background on `ack_threads` threads (default 8; at most 4 x that many
  pending; 0 = acknowledge in the caller's thread), so their commits share fsyncs. Like an AMQP
  ack, an ack is not waited for: if the process dies before it lands, the message runs again.

Leases and prefetch: a message in Celery's prefetch buffer is claimed by this process for
`lease` seconds (default 600) and renewed every `lease / 3` seconds while unacked, from the
consuming loop. With the PROCESS privilege mqlite never recovers a live session's claim, so a
message held longer than its lease is not redelivered while the worker lives; without it, the
renewal is what keeps it, and a dead worker's messages come back when their lease runs out.

Idle polling: every queue is polled once per round; after an empty round the consumer sleeps
`min_polling_interval` (default 0.01 s), doubling up to `polling_interval` (default 1 s) while
nothing arrives; an acknowledgement wakes it early (a slot in the prefetch window opened).

Not supported: fanout exchanges (so no broadcast: Celery's remote control and events stay off,
as with kombu's SQLAlchemy transport), priorities, per-message TTL.

Transport options (`broker_transport_options`): `lease`, `polling_interval`,
`min_polling_interval`, `claim_batch`, `ack_threads`, `queue_prefix`, and for the `mqlite.Queue`:
`table`, `pool_size`, `max_attempts`, `retry_for`, `recover_every`, `connect_timeout`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime
from queue import Empty
from time import monotonic
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, virtual
from kombu.utils.json import dumps, loads

from ..config import parse_dsn
from ..errors import DatabaseError, MqliteError, NotClaimed, Unavailable
from ..idle import IdleWait
from ..message import Message as MqMessage
from ..queue import Queue

log = logging.getLogger("mqlite.kombu")

TRANSPORT_ALIASES.setdefault("mqlite", "mqlite.contrib.kombu:Transport")

DEFAULT_LEASE = 600.0
DEFAULT_CLAIM_BATCH = 16  # most claims per batch (the prefetch window limits it further)
DEFAULT_ACK_THREADS = 8  # acks in flight at once, so that their commits share fsyncs
_QUEUE_OPTIONS = ("table", "pool_size", "max_attempts", "retry_for", "recover_every", "connect_timeout")


class _Shared:
    """One mqlite.Queue per process and configuration, shared by kombu connections, refcounted.

    Celery opens several connections per process (consumer, producers, events). Closing a Queue
    closes its claim sessions, which orphans every claim they hold, so it is closed only when the
    last connection using it closes. Keyed by pid: a forked child builds its own and never
    touches (or closes) the parent's, whose sessions it shares.
    """

    _lock = threading.Lock()
    _queues: dict[tuple, list[Any]] = {}

    @classmethod
    def acquire(cls, dsn: str | None, options: dict[str, Any]) -> Queue:
        key = (os.getpid(), dsn, tuple(sorted(options.items())))
        with cls._lock:
            entry = cls._queues.get(key)
            if entry is None:
                entry = cls._queues[key] = [Queue(dsn, **options), 0]
            entry[1] += 1
            return entry[0]

    @classmethod
    def release(cls, queue: Queue) -> None:
        with cls._lock:
            for key, entry in list(cls._queues.items()):
                if entry[0] is queue and key[0] == os.getpid():
                    entry[1] -= 1
                    if entry[1] > 0:
                        return
                    del cls._queues[key]
                    break
            else:
                return
        queue.close()


class _Claim:
    """One message this channel has claimed and not settled: buffered, or handed to kombu."""

    __slots__ = ("tag", "message", "renew_at")

    def __init__(self, message: MqMessage, renew_at: float) -> None:
        self.tag = str(message.receipt)  # the delivery tag: unique per claim
        self.message = message
        self.renew_at = renew_at


class Channel(virtual.Channel):
    """A kombu channel whose queues are mqlite queues."""

    def __init__(self, connection: Transport, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self._noack_queues: set[str] = set()
        self._lock = threading.Lock()
        self._held: dict[str, _Claim] = {}  # by delivery tag
        # Claimed in a batch, not handed to kombu yet.
        self._buffers: dict[str, deque[_Claim]] = {}
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
        delay = _delay_of(message)
        self.mq.push(self._name(queue), dumps(message), delay=delay)

    def _purge(self, queue: str) -> int:
        return self.mq.purge(self._name(queue))

    def _size(self, queue: str) -> int:
        return self.mq.size(self._name(queue))

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        self._purge(queue)

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

    def _next_claimed(self, queue: str, batch: bool) -> _Claim | None:
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

    def _hold(self, messages: list[MqMessage]) -> list[_Claim]:
        renew_at = monotonic() + self.connection.lease / 3
        claims = [_Claim(m, renew_at) for m in messages]
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

    def _payload(self, m: MqMessage, claim: _Claim | None) -> dict | None:
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

    def _give_back(self, claims: list[_Claim]) -> None:
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
        asynchronous=False, exchange_type=frozenset(["direct", "topic"]), heartbeats=False,
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
        self._queue_options.setdefault("pool_size", max(10, self.ack_threads + 4))
        self._dsn = _dsn_of(client.hostname)
        self._mq: Queue | None = None
        self._mq_lock = threading.Lock()
        self._claim_pool: ThreadPoolExecutor | None = None
        self._refill_pool: ThreadPoolExecutor | None = None
        self._ack_pool: ThreadPoolExecutor | None = None
        self._ack_slots = threading.BoundedSemaphore(max(1, 4 * self.ack_threads))
        self._acks_pending: set[Any] = set()
        self._pools_lock = threading.Lock()
        self._recovered = False
        longest = max(self.polling_interval or 0.0, self.min_polling_interval)
        self._idle = IdleWait(self.min_polling_interval, longest)
        self._wakeup = threading.Event()
        self._next_renewal = 0.0

    @property
    def mq(self) -> Queue:
        mq = self._mq
        if mq is None:
            with self._mq_lock:
                if self._mq is None:
                    self._mq = _Shared.acquire(self._dsn, self._queue_options)
                mq = self._mq
        return mq

    def establish_connection(self) -> Any:
        self.mq.schema_status()  # fails here, as a connection error, when the server is unreachable
        return super().establish_connection()

    def close_connection(self, connection: Any) -> None:
        try:
            super().close_connection(connection)  # closes channels, which release unacked claims
        finally:
            self.flush_acks()
            with self._pools_lock:
                pools = (self._refill_pool, self._claim_pool, self._ack_pool)
                self._refill_pool = self._claim_pool = self._ack_pool = None
            for pool in pools:
                if pool is not None:
                    pool.shutdown(wait=True)
            with self._mq_lock:
                mq, self._mq = self._mq, None
            if mq is not None:
                _Shared.release(mq)

    # -- claiming in batches, acknowledging in the background ---------------------------------

    def _pool(self, kind: str) -> ThreadPoolExecutor:
        with self._pools_lock:
            if kind == "refill":
                if self._refill_pool is None:
                    self._refill_pool = ThreadPoolExecutor(2, thread_name_prefix="mqlite-refill")
                return self._refill_pool
            if kind == "claim":
                if self._claim_pool is None:
                    self._claim_pool = ThreadPoolExecutor(self.claim_batch, thread_name_prefix="mqlite-claim")
                return self._claim_pool
            if self._ack_pool is None:
                self._ack_pool = ThreadPoolExecutor(self.ack_threads, thread_name_prefix="mqlite-ack")
            return self._ack_pool

    def submit_refill(self, fn: Any, queue: str, want: int) -> Any:
        return self._pool("refill").submit(fn, queue, want)

    def take_many(self, queue: str, want: int) -> list[MqMessage]:
        """Claim up to `want` messages of `queue` (mqlite queue name).

        `Queue.take` claims one message per caller; callers waiting at the same time share one
        claim statement (mqlite's group claim). So `want` concurrent takes cost a few statements
        instead of `want`, on a server where every statement is a commit.
        """
        mq = self.mq
        if want <= 1:
            m = mq.take(queue, lease=self.lease)
            return [] if m is None else [m]
        futures = [self._pool("claim").submit(mq.take, queue, lease=self.lease) for _ in range(want)]
        got: list[MqMessage] = []
        error: BaseException | None = None
        for future in futures:
            try:
                m = future.result()
            except Exception as exc:  # that take claimed nothing; the others' claims stand
                error = error or exc
                continue
            if m is not None:
                got.append(m)
        if error is not None and not got:
            raise error
        got.sort(key=lambda m: m.id)
        return got

    def ack(self, message: MqMessage) -> None:
        """Acknowledge in the background (as AMQP does: an ack is not waited for). Bounded: at most
        4 x `ack_threads` acks are pending; `ack_threads=0` acknowledges in the caller's thread.
        An ack lost with its process leaves the claim to recovery: the message runs again."""
        if not self.ack_threads:
            self.mq.ack(message)
            return
        self._ack_slots.acquire()
        try:
            future = self._pool("ack").submit(self._ack_now, message)
        except BaseException:
            self._ack_slots.release()
            raise
        with self._pools_lock:
            self._acks_pending.add(future)
        future.add_done_callback(self._ack_done)

    def _ack_now(self, message: MqMessage) -> None:
        try:
            self.mq.ack(message)
        except Exception as exc:
            log.error("mqlite: ack of message %s failed (it will be delivered again): %s", message.id, exc)

    def _ack_done(self, future: Any) -> None:
        with self._pools_lock:
            self._acks_pending.discard(future)
        self._ack_slots.release()

    def flush_acks(self, timeout: float | None = 60.0) -> None:
        """Wait for the acks sent in the background."""
        with self._pools_lock:
            pending = list(self._acks_pending)
        if pending:
            wait(pending, timeout=timeout)

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
            assert self.cycle is not None  # set by kombu when the connection is established
            try:
                self.cycle.get(self._deliver, timeout=timeout)
            except Empty:
                elapsed = monotonic() - start
                if timeout is not None and elapsed >= timeout:
                    raise socket.timeout() from None
                # Rung by pushes to the queues consumed now, from any process (mqlite/wake.py).
                self._idle.bell, self._idle.queues = self.mq.doorbell, self._consumed()
                self._idle.wait(self._wakeup, limit=None if timeout is None else timeout - elapsed)
                self._wakeup.clear()
            else:
                self._idle.reset()
                return

    def driver_version(self) -> str:
        from .. import __version__

        return __version__

    @classmethod
    def as_uri(cls, uri: str, include_password: bool = False, mask: str = "**") -> str:
        if include_password or "://" not in uri:
            return uri
        try:
            return parse_dsn(uri).redacted()
        except MqliteError:
            return "mysql://<unparsable DSN>"


def _dsn_of(hostname: str | None) -> str | None:
    """The DSN from kombu's hostname (`mysql://…`, the part after `mqlite+`); None -> MQLITE_DSN."""
    if not hostname or "://" not in hostname:
        return None
    scheme, rest = hostname.split("://", 1)
    if scheme in ("mqlite", "mqlite+mysql"):
        return "mysql://" + rest
    return hostname


def _delay_of(message: dict) -> float | None:
    """Seconds until the message is due: Celery's `eta` header, or a `DelaySeconds` property."""
    properties = message.get("properties") or {}
    seconds = properties.get("DelaySeconds")
    if seconds is not None:
        try:
            return max(0.0, float(seconds))
        except (TypeError, ValueError):
            return None
    eta = (message.get("headers") or {}).get("eta")
    if not eta:
        return None
    try:
        when = eta if isinstance(eta, datetime) else datetime.fromisoformat(str(eta))
    except ValueError:
        return None
    now = datetime.now(when.tzinfo) if when.tzinfo else datetime.now()
    return max(0.0, (when - now).total_seconds())
