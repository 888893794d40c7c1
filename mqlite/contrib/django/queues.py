"""`DjangoQueue`: a Queue whose push, push_many and ack join Django's transaction on its alias
inside `transaction.atomic()`; `get_queue()` builds the project's one from the settings."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from django.db import connections

from ...message import Body
from ...queue import Queue
from ...settle import Claimable
from . import conf


class DjangoQueue(Queue):
    """A `Queue` tied to Django's database `alias`.

    Inside `transaction.atomic(using=alias)`, `push`, `push_many` and `ack` run on Django's
    connection, in its transaction (a savepoint of a nested atomic block rolls them back with
    it). Outside, Django's connection is in autocommit and would commit each statement at once
    anyway: they use mqlite's own pooled connections, with its retries. `connection=` given
    explicitly wins either way.
    """

    def __init__(self, dsn: str | None = None, *, alias: str = "default", **kwargs: Any) -> None:
        super().__init__(dsn, **kwargs)
        self.alias = alias

    def joined(self, connection: Any = None) -> Any:
        """The connection a call runs on: the one given, else Django's inside atomic(), else None (mqlite's own)."""
        if connection is not None:
            return connection
        django_conn = connections[self.alias]
        return django_conn if django_conn.in_atomic_block else None

    def push(self, queue: str, body: Body, *, connection: Any = None, **options: Any) -> int:
        return super().push(queue, body, connection=self.joined(connection), **options)

    def push_many(self, queue: str, bodies: Iterable[Body], *, priority: int = 0, connection: Any = None) -> list[int]:
        return super().push_many(queue, bodies, priority=priority, connection=self.joined(connection))

    def ack(self, message: Claimable, *, connection: Any = None) -> bool:
        return super().ack(message, connection=self.joined(connection))


_queue: DjangoQueue | None = None
_lock = threading.Lock()


def get_queue() -> DjangoQueue:
    """The project's DjangoQueue, built on first use from `MQLITE` and `DATABASES`."""
    global _queue
    if _queue is None:
        with _lock:
            if _queue is None:
                cfg = conf.config()
                _queue = DjangoQueue(cfg.dsn or conf.database_dsn(cfg.database), alias=cfg.database,
                                     table=cfg.table, **cfg.options)
    return _queue


def forget_queue() -> None:
    """Close the project's queue; the next `get_queue()` builds it again (settings changed)."""
    global _queue
    with _lock:
        old, _queue = _queue, None
    if old is not None:
        old.close()
