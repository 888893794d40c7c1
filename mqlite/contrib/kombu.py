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

- publish: `Queue.push`. Celery's `countdown`/`eta` (the `eta` header) and a `DelaySeconds`
  property become mqlite delays: the message stays delayed in the table, not in a worker's memory.
- consume (`acks_late` or any `no_ack=False` consumer): `Queue.take(lease=…)`; the delivery tag
  is the claim's receipt. `basic_ack` -> `ack`; `basic_reject(requeue=True)` -> `nack` with no
  delay (back at once, one attempt counted, so a message that keeps killing its worker ends
  failed after `max_attempts` instead of looping); `basic_reject(requeue=False)` -> `fail`
  (kept in the failed state with the reason, mqlite's dead letter).
- unacked messages at a clean shutdown (kombu's restore): `release`, the same message, no attempt
  counted. A worker that dies (SIGKILL, OOM, power loss) restores nothing: its claims are owned
  by its dead database sessions and come back by mqlite's recovery, which every consumer runs
  (and a consumer runs once at start).
- `no_ack=True` consumers and `basic_get(no_ack=True)`: `Queue.pop` (at-most-once).
- purge: `Queue.purge` (ready and delayed messages; claimed ones finish).

Leases and prefetch: a message in Celery's prefetch buffer is claimed by this process for
`lease` seconds (default 600) and renewed every `lease / 3` seconds while unacked, from the
consuming loop. With the PROCESS privilege mqlite never recovers a live session's claim, so a
message held longer than its lease is not redelivered while the worker lives; without it, the
renewal is what keeps it, and a dead worker's messages come back when their lease runs out.

Idle polling: every queue is polled once per round; after an empty round the consumer sleeps
`min_polling_interval` (default 0.01 s), doubling up to `polling_interval` (default 1 s) while
nothing arrives; an acknowledgement wakes it early (a slot in the prefetch window opened).

Transport options (`broker_transport_options`): `table`, `queue_prefix`, `lease`,
`polling_interval`, `min_polling_interval`, `pool_size`, `max_attempts`, `retry_for`,
`recover_every`, `connect_timeout`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import datetime
from queue import Empty
from time import monotonic
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, virtual
from kombu.utils.json import dumps, loads

from ..config import parse_dsn
from ..errors import DatabaseError, MqliteError, NotClaimed, Unavailable
from ..message import Message as MqMessage
from ..queue import Queue

log = logging.getLogger("mqlite.kombu")

TRANSPORT_ALIASES.setdefault("mqlite", "mqlite.contrib.kombu:Transport")

DEFAULT_LEASE = 600.0
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


class Channel(virtual.Channel):
    """A kombu channel whose queues are mqlite queues."""

    def __init__(self, connection: Transport, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self._noack_queues: set[str] = set()
        # Claims handed to kombu and not settled yet: receipt -> monotonic time of the next renewal.
        self._held: dict[str, float] = {}
        self._held_lock = threading.Lock()

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
        if consumer_tag in self._consumers:
            self._noack_queues.discard(self._tag_to_queue.get(consumer_tag))
        return super().basic_cancel(consumer_tag)

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        try:
            message = self.Message(self._get(queue, no_ack=no_ack), channel=self)
        except Empty:
            return None
        if not no_ack:
            self.qos.append(message, message.delivery_tag)
        return message

    def _get(self, queue: str, timeout: float | None = None, no_ack: bool | None = None) -> dict:
        name = self._name(queue)
        if no_ack is None:
            no_ack = queue in self._noack_queues
        while True:
            m = self.mq.pop(name) if no_ack else self.mq.take(name, lease=self.connection.lease)
            if m is None:
                raise Empty()
            payload = self._payload(m, claimed=not no_ack)
            if payload is not None:
                return payload

    def _payload(self, m: MqMessage, *, claimed: bool) -> dict | None:
        try:
            payload = loads(m.body)
            properties = payload["properties"]
        except (ValueError, TypeError, KeyError):
            # Pushed by something other than kombu: not ours to deliver, and it must not loop.
            if claimed:
                self.mq.fail(m, "not a kombu message (body is not a kombu JSON payload)")
            log.error("mqlite: message %s on queue %r is not a kombu message; %s", m.id, m.queue,
                      "kept as failed" if claimed else "dropped (no_ack)")
            return None
        info = properties.setdefault("delivery_info", {})
        info["redelivered"] = bool(m.attempts) or bool(payload.get("redelivered"))
        if claimed:
            tag = str(m.receipt)
            properties["delivery_tag"] = tag
            with self._held_lock:
                self._held[tag] = monotonic() + self.connection.lease / 3
        return payload

    def _settled(self, tag: str) -> bool:
        """Forget a claim this channel handed out; False if it is not one (no_ack, or already settled)."""
        with self._held_lock:
            return self._held.pop(tag, None) is not None

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        if self._settled(delivery_tag):
            self.mq.ack(delivery_tag)
        super().basic_ack(delivery_tag, multiple=multiple)
        self.connection.wake()

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if self._settled(delivery_tag):
            if requeue:
                self.mq.nack(delivery_tag, "rejected by the consumer (requeue)", delay=0)
            else:
                self.mq.fail(delivery_tag, "rejected by the consumer")
            self.qos.reject(delivery_tag, requeue=False)
        else:
            super().basic_reject(delivery_tag, requeue=requeue)
        self.connection.wake()

    def _restore(self, message: Any) -> None:
        # kombu's restore of unacked messages (channel close, basic_recover): give the claim back.
        tag = message.delivery_tag
        if self._settled(tag):
            self.mq.release(tag)
        else:
            super()._restore(message)

    def renew_leases(self, now: float) -> None:
        """Extend the claims held longer than a third of their lease (called from the consuming loop)."""
        lease = self.connection.lease
        with self._held_lock:
            due = [tag for tag, at in self._held.items() if at <= now]
        for tag in due:
            try:
                kept = self.mq.extend(tag, lease)
            except NotClaimed:
                kept = False
            with self._held_lock:
                if tag not in self._held:
                    continue  # settled meanwhile
                if kept:
                    self._held[tag] = now + lease / 3
                else:
                    log.warning("mqlite: claim %s was lost while held; it will be delivered again", tag)
                    self._held[tag] = float("inf")

    def close(self) -> None:
        super().close()  # restores (releases) unacked messages first
        with self._held_lock:
            self._held.clear()


class Transport(virtual.Transport):
    """kombu transport storing messages in an mqlite table (MySQL/MariaDB)."""

    Channel = Channel

    # The URL is mqlite's own DSN (mysql://user:pass@host:port/db?…); kombu must not split it.
    can_parse_url = True
    default_port = 3306
    driver_type = "mysql"
    driver_name = "mqlite"

    polling_interval = 1.0  # the longest idle sleep between polling rounds
    min_polling_interval = 0.01  # the first one, doubled after each empty round

    connection_errors = virtual.Transport.connection_errors + (Unavailable,)
    channel_errors = virtual.Transport.channel_errors + (DatabaseError,)

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
        self._queue_options = {k: opts[k] for k in _QUEUE_OPTIONS if k in opts}
        self._dsn = _dsn_of(client.hostname)
        self._mq: Queue | None = None
        self._mq_lock = threading.Lock()
        self._recovered = False
        self._idle = self.min_polling_interval
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
            with self._mq_lock:
                mq, self._mq = self._mq, None
            if mq is not None:
                _Shared.release(mq)

    def verify_connection(self, connection: Any) -> bool:
        try:
            self.mq.schema_status()
            return True
        except MqliteError:
            return False

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

    def wake(self) -> None:
        self._wakeup.set()

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:
        """Deliver one message; poll with a bounded exponential backoff while there is none."""
        start = monotonic()
        while True:
            now = monotonic()
            if now >= self._next_renewal:
                self._next_renewal = now + min(5.0, self.lease / 6)
                for channel in list(self.channels):
                    channel.renew_leases(now)
            try:
                self.cycle.get(self._deliver, timeout=timeout)
            except Empty:
                elapsed = monotonic() - start
                if timeout is not None and elapsed >= timeout:
                    raise socket.timeout() from None
                wait = self._idle
                self._idle = min(self._idle * 2, max(self.polling_interval or 0.0, self.min_polling_interval))
                if timeout is not None:
                    wait = min(wait, timeout - elapsed)
                if wait > 0:
                    self._wakeup.wait(wait)
                self._wakeup.clear()
            else:
                self._idle = self.min_polling_interval
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
