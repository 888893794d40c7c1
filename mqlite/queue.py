"""`Queue`: the public verbs over one messages table, each a short method over claim, recovery and the pool."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import claim as protocol
from . import recovery, retry, schema
from .config import DEFAULT_TABLE, check_queue, parse_dsn, resolve_dsn
from .errors import PayloadTooLarge
from .claim import Claimer
from .message import Body, Message, as_bytes
from .pool import Pool
from .sql import statements

log = logging.getLogger("mqlite")

_STATEMENT_HEADROOM = 1024  # bytes kept free in a packet for the statement text around the values
_MAX_ROWS_PER_INSERT = 1000
_MAX_INSERT_BYTES = 4 << 20  # a multi-row INSERT larger than this gains nothing and holds locks longer
_PURGE_SLICE = 5000


@dataclass(frozen=True)
class QueueStats:
    """Depth of one queue."""

    queue: str
    ready: int
    claimed: int
    oldest_ready: datetime | None


@dataclass(frozen=True)
class Stats:
    """Depth of every queue in the table, and whether recovery can see every session."""

    queues: dict[str, QueueStats]
    sees_all_connections: bool


class Queue:
    """A handle on one messages table. Thread-safe; one per process is the intended use.

    `dsn=None` reads `MQLITE_DSN`. Connections are pooled (at most `pool_size`), opened lazily,
    and time out after `connect_timeout` seconds. Transient errors are retried for up to
    `retry_for` seconds (0 disables retries).
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        table: str = DEFAULT_TABLE,
        pool_size: int = 10,
        connect_timeout: float = 5.0,
        checkout_timeout: float = 10.0,
        retry_for: float = 10.0,
    ) -> None:
        self.settings = parse_dsn(resolve_dsn(dsn))
        self._sql = statements(table)
        self.table = table
        self._pool = Pool(
            self.settings, size=pool_size, connect_timeout=connect_timeout, checkout_timeout=checkout_timeout
        )
        self._policy = retry.transient_policy(retry_for) if retry_for > 0 else None
        self._claimers: dict[tuple[str, bool], Claimer] = {}
        self._claimers_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Queue({self.settings.redacted()!r}, table={self.table!r})"

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release messages claimed but not handed out, and close all connections.

        Messages still inside a `claim` block become orphans and come back by recovery.
        The Queue reopens connections if used again.
        """
        with self._claimers_lock:
            claimers, self._claimers = list(self._claimers.values()), {}
        unreturned = [m for claimer in claimers for m in claimer.close()]
        if unreturned:
            # Consumed for a pop whose caller gave up before taking it: put it back, same id.
            with self._pool.connection() as conn:
                cur = conn.cursor()
                for m in unreturned:
                    cur.execute(self._sql.restore, (m.id, m.queue, m.body, m.created_at))
                cur.close()
        self._pool.close()

    # -- producing -------------------------------------------------------------

    def push(self, queue: str, body: Body) -> int:
        """Append one message; returns its id.

        At-least-once: if the connection is lost after the INSERT reached the server, the retry
        may store the message twice. Raises PayloadTooLarge before sending anything too large.
        """
        name = check_queue(queue)
        data = as_bytes(body)

        def attempt() -> int:
            with self._pool.connection() as conn:
                self._check_fits(conn, name, data)
                cur = conn.cursor()
                cur.execute(self._sql.push, (name, data))
                new_id = cur.lastrowid
                cur.close()
                return int(new_id)

        return retry.call(self._policy, attempt)

    def push_many(self, queue: str, bodies: Iterable[Body]) -> list[int]:
        """Append many messages in one transaction (all or none); returns their ids in order."""
        name = check_queue(queue)
        datas = [as_bytes(b) for b in bodies]
        if not datas:
            return []

        def attempt() -> list[int]:
            with self._pool.connection() as conn:
                chunks = self._plan_chunks(conn, name, datas)
                increment = self._pool.server.auto_increment_increment if self._pool.server else 1
                ids: list[int] = []
                cur = conn.cursor()
                cur.execute("START TRANSACTION")
                for chunk in chunks:
                    params: list[Any] = []
                    for data in chunk:
                        params += (name, data)
                    cur.execute(self._sql.push_many(len(chunk)), params)
                    # A multi-row INSERT with known row count takes consecutive auto-increment
                    # values (InnoDB reserves them at once, in every autoinc lock mode).
                    first = int(cur.lastrowid)
                    ids.extend(first + i * increment for i in range(len(chunk)))
                conn.commit()
                cur.close()
                return ids

        return retry.call(self._policy, attempt)

    def _check_fits(self, conn: Any, queue: str, data: bytes) -> None:
        limit = self._pool.server.max_allowed_packet if self._pool.server else 0
        if limit and self._escaped_size(conn, data, limit) + len(queue) * 8 + _STATEMENT_HEADROOM > limit:
            raise PayloadTooLarge(
                f"body of {len(data)} bytes does not fit the server's max_allowed_packet of {limit} bytes"
            )

    @staticmethod
    def _escaped_size(conn: Any, data: bytes, limit: int) -> int:
        # Escaping at most doubles a body; count exactly only when the bound is not enough.
        if 2 * len(data) + _STATEMENT_HEADROOM <= limit // 2:
            return 2 * len(data)
        return len(conn.escape_string(data))

    def _plan_chunks(self, conn: Any, queue: str, datas: list[bytes]) -> list[list[bytes]]:
        limit = self._pool.server.max_allowed_packet if self._pool.server else 1 << 20
        budget = min(limit, _MAX_INSERT_BYTES) - _STATEMENT_HEADROOM
        chunks: list[list[bytes]] = []
        current: list[bytes] = []
        used = 0
        for data in datas:
            self._check_fits(conn, queue, data)
            size = self._escaped_size(conn, data, limit) + len(queue) * 8 + 32
            if current and (used + size > budget or len(current) >= _MAX_ROWS_PER_INSERT):
                chunks.append(current)
                current, used = [], 0
            current.append(data)
            used += size
        chunks.append(current)
        return chunks

    # -- consuming -------------------------------------------------------------

    def pop(self, queue: str) -> Message | None:
        """Take the oldest ready message, deleting it before returning (at-most-once).

        Returns None at once when the queue is empty; never blocks waiting for a message.
        """
        return retry.call(self._policy, self._claimer(check_queue(queue), consume=True).take)

    @contextmanager
    def claim(self, queue: str) -> Iterator[Message | None]:
        """Claim the oldest ready message for the `with` block (at-least-once).

        Yields None when the queue is empty. The message is deleted when the block exits normally
        and released back to the queue when it raises. If the process dies inside the block, the
        row stays owned by its dead session and comes back through `recover()`.
        """
        claimer = self._claimer(check_queue(queue), consume=False)
        message = retry.call(self._policy, claimer.take)
        if message is None:
            yield None
            return
        try:
            yield message
        except BaseException:
            self._finish(claimer, message, protocol.release, "release")
            raise
        else:
            self._finish(claimer, message, protocol.delete, "ack")

    def _finish(self, claimer: Claimer, message: Message, step: Any, what: str) -> None:
        try:
            done = retry.call(self._policy, lambda: self._on_any_connection(step, message))
        finally:
            claimer.done(message)
        if not done:
            log.warning("mqlite: %s of message %s found its claim gone (recovered elsewhere)", what, message.id)

    def _on_any_connection(self, step: Any, message: Message) -> bool:
        with self._pool.connection() as conn:
            cur = conn.cursor()
            try:
                return bool(step(cur, self._sql, message))
            finally:
                cur.close()

    def _claimer(self, queue: str, *, consume: bool) -> Claimer:
        key = (queue, consume)
        claimer = self._claimers.get(key)
        if claimer is None:
            with self._claimers_lock:
                claimer = self._claimers.get(key)
                if claimer is None:
                    claimer = Claimer(
                        self._pool.open_session, self._pool.translating, self._sql, queue, consume=consume
                    )
                    self._claimers[key] = claimer
        return claimer

    def recover(self) -> recovery.Recovery:
        """Put back claims whose owner is gone (dead session, or claimed before the server restarted)."""

        def attempt() -> recovery.Recovery:
            with self._pool.connection() as conn:
                return recovery.recover(conn, self._sql)

        return retry.call(self._policy, attempt)

    # -- schema ----------------------------------------------------------------

    def apply_schema(self) -> list[schema.Migration]:
        """Create or upgrade the messages table; returns the migrations applied (empty: up to date)."""
        with self._pool.connection() as conn:
            return schema.apply(conn, self.table)

    def schema_status(self) -> schema.SchemaStatus:
        """Applied and pending schema versions of the messages table."""
        with self._pool.connection() as conn:
            return schema.status(conn, self.table)

    # -- inspecting ------------------------------------------------------------

    def peek(self, queue: str, limit: int = 10) -> list[Message]:
        """The oldest ready messages of `queue`, without claiming them."""
        name = check_queue(queue)
        if not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise ValueError("limit must be an integer from 1 to 10000")
        return [Message.from_row(r) for r in self._fetch(self._sql.peek, (name, limit))]

    def size(self, queue: str) -> int:
        """How many messages of `queue` are ready."""
        return int(self._fetch(self._sql.size, (check_queue(queue),))[0][0])

    def stats(self) -> Stats:
        """Per-queue depth (ready, claimed, oldest ready) for every queue in the table."""

        def attempt() -> Stats:
            with self._pool.connection() as conn:
                cur = conn.cursor()
                cur.execute(self._sql.stats)
                rows = cur.fetchall()
                sees_all = recovery.sees_all_connections(cur)
                cur.close()
            queues = {
                q: QueueStats(q, int(ready or 0), int(claimed or 0), oldest) for q, ready, claimed, oldest in rows
            }
            return Stats(queues, sees_all)

        return retry.call(self._policy, attempt)

    def purge(self, queue: str) -> int:
        """Delete every ready message of `queue`; returns how many. Claimed messages are left to finish."""
        name = check_queue(queue)
        total = 0
        while True:
            n = self._execute(self._sql.purge, (name, _PURGE_SLICE))
            total += n
            if n < _PURGE_SLICE:
                return total

    # -- helpers ---------------------------------------------------------------

    def _fetch(self, statement: str, params: tuple) -> list[tuple]:
        def attempt() -> list[tuple]:
            with self._pool.connection() as conn:
                cur = conn.cursor()
                cur.execute(statement, params)
                rows = list(cur.fetchall())
                cur.close()
                return rows

        return retry.call(self._policy, attempt)

    def _execute(self, statement: str, params: tuple) -> int:
        def attempt() -> int:
            with self._pool.connection() as conn:
                cur = conn.cursor()
                n = cur.execute(statement, params)
                cur.close()
                return int(n)

        return retry.call(self._policy, attempt)


_default: Queue | None = None
_default_lock = threading.Lock()


def default_queue() -> Queue:
    """The process-wide Queue built from `MQLITE_DSN`, created on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Queue()
    return _default

