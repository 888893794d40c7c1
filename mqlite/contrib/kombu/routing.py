"""Exchanges shared between processes, and queues that expire: broadcast for the kombu transport.

kombu's virtual transport keeps bindings in each process's memory. That routes a process's own
publishes to the queues it declared, but a fanout exchange (Celery's `celery.pidbox`, remote
control) must reach the queues of every worker, and a worker's reply must reach the queue the
asking process bound. So every binding is also a row of `mqlite_kombu_bindings` (schema/010):

- fanout: the published message is copied into each queue bound to the exchange, read fresh;
- direct / topic: kombu's own matching over this process's bindings plus the shared ones (those
  cached for `BINDINGS_TTL` seconds; a routing key that matches nothing is looked up again);
- `x-expires` / `auto_delete` queues (reply queues, pidbox queues) are rows of
  `mqlite_kombu_queues` whose deadline their consumers push forward while they poll; a sweep
  purges the messages and bindings of a queue past it, so they do not pile up in the table.
"""

from __future__ import annotations

import logging
import threading
from time import monotonic
from typing import Any

from kombu.transport.base import to_rabbitmq_queue_arguments

from ... import sql
from ...errors import MqliteError
from ...queue import Queue

log = logging.getLogger("mqlite.kombu")

BINDINGS_TTL = 1.0  # seconds a process reuses the shared bindings of a direct/topic exchange
AUTO_DELETE_EXPIRES_MS = 60_000  # an auto_delete queue without x-expires: gone after 60 s unused
DELETED_GRACE_MS = 3_000  # a deleted queue's row stays this long: a reply in flight is purged with it
SWEEP_EVERY = 5.0  # seconds between sweeps of expired queues, per process
SWEEP_BATCH = 100


class Routing:
    """The shared bindings and expiring queues of one transport (one table, one queue_prefix)."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, list[tuple[str, str | None, str]]]] = {}
        self._next_sweep = 0.0

    @property
    def _mq(self) -> Queue:
        return self._transport.mq  # type: ignore[no-any-return]

    @property
    def _key(self) -> tuple[str, str]:
        return self._mq.table, self._transport.queue_prefix

    def bind(self, exchange: str, routing_key: str, pattern: str | None, queue: str) -> None:
        self._mq._execute(sql.KOMBU_BIND, (*self._key, exchange, routing_key or "", queue, pattern))
        self.forget(exchange)

    def unbind(self, exchange: str, routing_key: str, queue: str) -> None:
        self._mq._execute(sql.KOMBU_UNBIND, (*self._key, exchange, routing_key or "", queue))
        self.forget(exchange)

    def table(self, exchange: str, *, fresh: bool = False) -> list[tuple[str, str | None, str]]:
        """The shared bindings of `exchange` as kombu's (routing_key, pattern, queue) rows."""
        now = monotonic()
        with self._lock:
            cached = self._cache.get(exchange)
        if cached is not None and not fresh and cached[0] > now:
            return cached[1]
        found = self._mq._fetch(sql.KOMBU_BINDINGS, (*self._key, exchange))
        rows = [(rk, pattern, queue) for rk, pattern, queue in found]
        with self._lock:
            self._cache[exchange] = (now + BINDINGS_TTL, rows)
        return rows

    def forget(self, exchange: str) -> None:
        with self._lock:
            self._cache.pop(exchange, None)

    def declare(self, queue: str, expires_ms: int | None) -> None:
        """Record a declared queue: expiring after `expires_ms` unused, or never (None)."""
        us = None if expires_ms is None else expires_ms * 1000
        self._mq._execute(sql.KOMBU_DECLARE_QUEUE, (*self._key, queue, expires_ms, us, expires_ms, us))

    def delete(self, queue: str, name: str) -> None:
        """Delete `queue` (mqlite name `name`): unbound at once and purged; its row is kept
        DELETED_GRACE_MS, so a message routed to it just before is purged by the sweep."""
        self._mq._execute(sql.KOMBU_UNBIND_QUEUE, (*self._key, queue))
        with self._lock:
            self._cache.clear()
        self.declare(queue, DELETED_GRACE_MS)
        self._mq.purge(name)

    def touch(self, queues: list[str]) -> None:
        """Push the deadline of expiring queues forward: they have a consumer."""
        if queues:
            statement = sql.Statements.in_list(sql.KOMBU_TOUCH_QUEUES, len(queues))
            self._mq._execute(statement, (*self._key, *queues))

    def sweep(self, *, force: bool = False) -> int:
        """Purge and forget the queues past their deadline (every SWEEP_EVERY s unless `force`);
        returns how many. Any process of any prefix sweeps the whole table's expired queues."""
        now = monotonic()
        with self._lock:
            if not force and now < self._next_sweep:
                return 0
            self._next_sweep = now + SWEEP_EVERY
        mq = self._mq
        done = 0
        try:
            for prefix, queue in mq._fetch(sql.KOMBU_EXPIRED_QUEUES, (mq.table, SWEEP_BATCH)):
                if not mq._execute(sql.KOMBU_FORGET_QUEUE, (mq.table, prefix, queue)):
                    continue  # redeclared, or swept by another process
                mq._execute(sql.KOMBU_UNBIND_QUEUE, (mq.table, prefix, queue))
                mq.purge(prefix + queue)
                done += 1
        except MqliteError as exc:  # the next sweep tries again
            log.warning("mqlite: sweep of expired kombu queues failed: %s", exc)
        if done:
            with self._lock:
                self._cache.clear()
        return done


def expiry_of(auto_delete: bool, arguments: dict[str, Any] | None) -> int | None:
    """Milliseconds a declared queue lives unused: `x-expires`, else AUTO_DELETE_EXPIRES_MS for an
    auto_delete queue (its consumers in other processes are not counted), else None."""
    expires = (arguments or {}).get("x-expires")
    if expires is not None:
        try:
            return max(1, int(expires))
        except (TypeError, ValueError):
            pass
    return AUTO_DELETE_EXPIRES_MS if auto_delete else None


class RoutingChannel:
    """The Channel's exchange and queue verbs over the shared tables (mixed into kombu.Channel)."""

    supports_fanout = True
    routing: Routing
    state: Any
    connection: Any

    def _routing_init(self) -> None:
        self.routing = self.connection.routing
        self._expiring: dict[str, int] = {}  # queues this channel declared expiring -> ms
        self._next_touch = 0.0

    def prepare_queue_arguments(self, arguments: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return to_rabbitmq_queue_arguments(arguments, **kwargs)  # kombu's `expires=` as `x-expires`

    def _new_queue(self, queue: str, auto_delete: bool = False, arguments: Any = None, **kwargs: Any) -> None:
        expires = expiry_of(auto_delete, arguments)
        if expires is not None:
            self._expiring[queue] = expires
        self.routing.declare(queue, expires)

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str | None, queue: str) -> None:
        self.routing.bind(exchange, routing_key, pattern, queue)

    def queue_unbind(self, queue: str, exchange: str | None = None, routing_key: str = "",
                     arguments: Any = None, **kwargs: Any) -> None:
        super().queue_unbind(queue, exchange, routing_key, arguments, **kwargs)  # type: ignore[misc]
        self.routing.unbind(exchange or "amq.direct", routing_key, queue)

    def queue_delete(self, queue: str, if_unused: bool = False, if_empty: bool = False, **kwargs: Any) -> None:
        if if_empty and self._size(queue):  # type: ignore[attr-defined]
            return
        # kombu's own delete forgets the queue's bindings but leaves it in the exchanges' tables.
        for exchange, _, _ in self.state.queue_bindings(queue):
            table = self.state.exchanges.get(exchange, {}).get("table")
            if table:
                table[:] = [row for row in table if row[2] != queue]
        self.state.queue_bindings_delete(queue)
        self._expiring.pop(queue, None)
        self.routing.delete(queue, self._name(queue))  # type: ignore[attr-defined]

    def exchange_delete(self, exchange: str, if_unused: bool = False, nowait: bool = False) -> None:
        # kombu's deletes the exchange's empty queues: only this process's, never other workers'.
        for _, _, queue in list(self.state.exchanges.get(exchange, {}).get("table", [])):
            self.queue_delete(queue, if_unused=True, if_empty=True)
        self.state.exchanges.pop(exchange, None)

    def get_table(self, exchange: str) -> list[tuple[str, str | None, str]]:
        try:
            local = list(self.state.exchanges[exchange]["table"])
        except KeyError:
            local = []
        shared = [row for row in self.routing.table(exchange) if row not in local]
        return local + shared

    def _lookup(self, exchange: str, routing_key: str, default: str | None = None) -> list[str]:
        if exchange:
            found = self.typeof(exchange).lookup(self.get_table(exchange), exchange, routing_key, default)  # type: ignore[attr-defined]
            if found:
                return list(found)
            self.routing.forget(exchange)  # bound elsewhere since the cached read, perhaps
        return super()._lookup(exchange, routing_key, default)  # type: ignore[misc,no-any-return]

    def _put_fanout(self, exchange: str, message: dict, routing_key: str, **kwargs: Any) -> None:
        for queue in sorted({queue for _, _, queue in self.routing.table(exchange, fresh=True)}):
            self._put(queue, message, **kwargs)  # type: ignore[attr-defined]

    def control_queues(self) -> list[str]:
        """Consumed queues that expire (reply and pidbox queues): polled more often when idle."""
        return [q for q in self._active_queues if q in self._expiring]  # type: ignore[attr-defined]

    def keep_alive(self, now: float) -> None:
        """Push forward the deadline of the expiring queues consumed here (from the consuming loop)."""
        if now < self._next_touch:
            return
        consumed = self.control_queues()
        self._next_touch = now + (min(self._expiring[q] for q in consumed) / 3000 if consumed else 1.0)
        if consumed:
            try:
                self.routing.touch(consumed)
            except MqliteError as exc:
                log.warning("mqlite: could not keep queues %s from expiring: %s", consumed, exc)
