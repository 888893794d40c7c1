"""The client side of each SQL strategy: mqlite itself, and the reference SQL over plain mysqlclient.

Every strategy runs on a table of the messages shape (schema/001), created for one run and
dropped after it, with the same bodies. Reference connections are plain MySQLdb connections,
one per client thread, autocommit, as a hand-written queue would use them.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import MySQLdb

from .. import schema
from ..config import check_table, parse_dsn
from ..queue import Queue
from .harness import Empty
from .reference_sql import GROUP, bare_group_claim, reference_statements

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
SEED_CHUNK = 2000  # rows per multi-row INSERT while seeding
LOCK_RETRIES = 100  # a reference op retries a deadlock / lock wait this often before giving up
_RETRY_CODES = (1213, 1205)


@dataclass(frozen=True)
class Case:
    """Everything a driver needs to know, in every process (picklable)."""

    dsn: str
    table: str  # the messages-shaped table (huey: the prefix of its tables)
    queue: str
    body_size: int = 100
    batch: int = 100  # messages per push-many call
    pool_size: int = 16
    redis_url: str = DEFAULT_REDIS_URL
    queues: int = 1  # > 1: the clients go round this many queues (`queue_names`), each its own turn

    @property
    def queue_names(self) -> list[str]:
        return [self.queue] if self.queues <= 1 else [f"{self.queue}-{k}" for k in range(self.queues)]


def body(size: int) -> bytes:
    """A body of `size` bytes, the same in every process (not compressible to nothing)."""
    pattern = bytes(range(33, 127))
    return (pattern * (size // len(pattern) + 1))[:size]


def stamped(size: int) -> bytes:
    """A body carrying the monotonic clock (system-wide on Linux) in its first 8 bytes."""
    return struct.pack("<q", time.monotonic_ns()) + body(max(0, size - 8))


def age(data: bytes) -> float:
    """Seconds since `stamped` made `data`."""
    return (time.monotonic_ns() - struct.unpack_from("<q", data)[0]) / 1e9


def connect(dsn: str) -> Any:
    """A plain autocommit driver connection (what a hand-written queue would use)."""
    return MySQLdb.connect(
        autocommit=True, charset="utf8mb4", collation="utf8mb4_bin", **parse_dsn(dsn).connect_kwargs()
    )


class _Samples:
    """Per-thread sample lists (appending to one's own list needs no lock)."""

    def __init__(self) -> None:
        self._lists: dict[str, list[list[float]]] = {}
        self._lock = threading.Lock()

    def new(self, name: str) -> list[float]:
        mine: list[float] = []
        with self._lock:
            self._lists.setdefault(name, []).append(mine)
        return mine

    def collect(self) -> dict[str, list[float]]:
        return {name: [x for part in parts for x in part] for name, parts in self._lists.items()}


class _Op:
    """A worker: a call, and what to close in its thread when the client stops."""

    def __init__(self, call: Callable[[], int], close: Callable[[], None] | None = None) -> None:
        self.call = call
        self._close = close

    def __call__(self) -> int:
        return self.call()

    def close(self) -> None:
        if self._close is not None:
            self._close()


# -- the table ------------------------------------------------------------------


def create_table(dsn: str, table: str) -> None:
    """A messages table of mqlite's current schema."""
    conn = connect(dsn)
    try:
        schema.apply(conn, check_table(table))
    finally:
        conn.close()


def keep_history(dsn: str, table: str, queue: str) -> None:
    """Turn on the history of `queue` in `table` (the `--history` rows)."""
    from ..queue import Queue

    q = Queue(dsn, table=table, pool_size=1)
    try:
        q.keep_history(queue, days=1)
    finally:
        q.close()


def drop_table(dsn: str, table: str) -> None:
    conn = connect(dsn)
    try:
        schema.drop(conn, table)
    finally:
        conn.close()


def _execute(dsn: str, statement: str) -> None:
    conn = connect(dsn)
    try:
        conn.cursor().execute(statement)
    finally:
        conn.close()


def create_reference_table(dsn: str, table: str) -> None:
    """A table of the reference strategies' fixed (Dwango, schema 001) shape."""
    _execute(dsn, reference_statements(table).create)


def drop_reference_table(dsn: str, table: str) -> None:
    _execute(dsn, reference_statements(table).drop)


def seed(dsn: str, table: str, queue: str, rows: int, size: int, *, tick: Callable[[int], None] | None = None) -> int:
    """Fill `queue` of an mqlite table with `rows` ready messages, through `Queue.push_many`.

    The library's own verb, so that the rows are ready whatever the schema adds.
    """
    q = Queue(dsn, table=table, pool_size=1)
    try:
        data, done = body(size), 0
        while done < rows:
            n = min(SEED_CHUNK, rows - done)
            q.push_many(queue, [data] * n)
            done += n
            if tick is not None:
                tick(done)
        return done
    finally:
        q.close()


def seed_reference(
    dsn: str, table: str, queue: str, rows: int, size: int, *, tick: Callable[[int], None] | None = None
) -> int:
    """Fill `queue` of a reference table with `rows` ready messages, by multi-row INSERTs.

    Not `INSERT … SELECT` from the table itself: that needs an internal temporary table, which
    spills to tmpdir past tmp_table_size and has failed there (error 6) on a shared /tmp.
    """
    return insert_rows(dsn, reference_statements(table).insert_many, (queue, body(size)), rows, tick=tick)


def sorting_plan(dsn: str, statement: str, params: tuple) -> str | None:
    """The EXPLAIN note when `statement` would sort (or copy) rows instead of walking an index.

    A locking read that sorts locks every row it reads first: `FOR UPDATE SKIP LOCKED` over a
    filesort of a 200,000-row queue filled a 128 MB buffer pool with lock structures and aborted
    a MariaDB 10.11 server here. References whose plan sorts are skipped, never run.
    """
    conn = connect(dsn)
    try:
        cur = conn.cursor()
        cur.execute("EXPLAIN " + statement, params)
        names = [d[0].lower() for d in cur.description]
        for row in cur.fetchall():
            extra = str(dict(zip(names, row, strict=False)).get("extra") or "")
            if "filesort" in extra.lower() or "temporary" in extra.lower():
                return extra
        return None
    finally:
        conn.close()


def insert_rows(
    dsn: str, statement: Callable[[int], str], values: tuple, rows: int, *, tick: Callable[[int], None] | None = None
) -> int:
    """Insert `rows` copies of `values` with `statement(n)`, an n-row INSERT; returns how many."""
    conn = connect(dsn)
    try:
        cur = conn.cursor()
        full, params = statement(SEED_CHUNK), list(values) * SEED_CHUNK
        done = 0
        while done < rows:
            n = min(SEED_CHUNK, rows - done)
            cur.execute(full if n == SEED_CHUNK else statement(n), params if n == SEED_CHUNK else list(values) * n)
            done += n
            if tick is not None:
                tick(done)
        cur.close()
        return done
    finally:
        conn.close()


def ready(dsn: str, table: str, queue: str) -> int:
    q = Queue(dsn, table=table, pool_size=1)
    try:
        return q.size(queue)
    finally:
        q.close()


# -- mqlite ---------------------------------------------------------------------


class MqliteDriver:
    """mqlite's public verbs over one `Queue` per process (a pooled connection per thread)."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.q = Queue(case.dsn, table=case.table, pool_size=case.pool_size, checkout_timeout=60)
        self._body = body(case.body_size)
        self._samples = _Samples()

    def prepare(self, clients: int) -> None:
        """Open the pool's connections before the clock starts (as a warm application has them)."""
        with ExitStack() as stack:
            for _ in range(min(clients, self.case.pool_size)):
                stack.enter_context(self.q._pool.connection())

    def worker(self, role: str, index: int) -> _Op:
        q, queue, data, case = self.q, self.case.queue, self._body, self.case
        if case.queues > 1:
            return self._round_robin(role, index)
        if role == "push":
            return _Op(lambda: q.push(queue, data) and 1)
        if role == "push-many":
            many = [data] * case.batch
            return _Op(lambda: len(q.push_many(queue, many)))
        if role == "pop":

            def pop() -> int:
                if q.pop(queue) is None:
                    raise Empty
                return 1

            return _Op(pop)
        if role == "claim":

            def claim() -> int:
                with q.claim(queue) as message:
                    if message is None:
                        raise Empty
                return 1

            return _Op(claim)
        if role == "push-stamped":
            return _Op(lambda: q.push(queue, stamped(case.body_size)) and 1)
        if role == "claim-e2e":
            e2e = self._samples.new("e2e")

            def handle() -> int:
                with q.claim(queue) as message:
                    if message is None:
                        raise Empty
                    e2e.append(age(message.body))  # push -> handler start
                return 1

            return _Op(handle)
        raise ValueError(f"unknown mqlite role {role!r}")

    def _round_robin(self, role: str, index: int) -> _Op:
        """Each call on the next of the case's queues; client `index` starts at queue `index`."""
        q, data, names = self.q, self._body, self.case.queue_names
        turn = [index % len(names)]

        def next_name() -> str:
            k = turn[0]
            turn[0] = (k + 1) % len(names)
            return names[k]

        if role == "push":
            return _Op(lambda: q.push(next_name(), data) and 1)
        if role in ("pop", "claim"):
            def take() -> int:
                # An empty queue is passed over; only a whole round of empty queues is Empty.
                for _ in range(len(names)):
                    if role == "pop":
                        if q.pop(next_name()) is not None:
                            return 1
                    else:
                        with q.claim(next_name()) as message:
                            if message is not None:
                                return 1
                raise Empty

            return _Op(take)
        raise ValueError(f"role {role!r} has no round-robin form (push, pop, claim)")

    def samples(self) -> dict[str, list[float]]:
        return self._samples.collect()

    def close(self) -> None:
        self.q.close()


# -- reference SQL over plain mysqlclient ---------------------------------------


def _retrying(op: Callable[[], int]) -> Callable[[], int]:
    """Redo a reference op after a deadlock or lock wait timeout, as any real queue must."""

    def call() -> int:
        for attempt in range(LOCK_RETRIES):
            try:
                return op()
            except MySQLdb.OperationalError as exc:
                if not exc.args or exc.args[0] not in _RETRY_CODES or attempt == LOCK_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    return call


class RawDriver:
    """Reference strategies: one plain connection per client thread, the SQL of `ReferenceStatements`."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.rs = reference_statements(case.table)
        self._body = body(case.body_size)
        self._in_flight = threading.Lock()  # group-claim: one statement set at a time, as one claimer

    def prepare(self, clients: int) -> None:
        pass

    def worker(self, role: str, index: int) -> _Op:
        conn = connect(self.case.dsn)
        cur = conn.cursor()
        rs, queue, data = self.rs, self.case.queue, self._body

        def close() -> None:
            cur.close()
            conn.close()

        if role == "insert":

            def insert() -> int:
                cur.execute(rs.insert, (queue, data))
                return 1

            return _Op(insert, close)
        if role == "insert-many":
            n = self.case.batch
            statement, params = rs.insert_many(n), [v for _ in range(n) for v in (queue, data)]

            def insert_many() -> int:
                cur.execute(statement, params)
                return n

            return _Op(insert_many, close)
        if role == "group-claim":
            return self._group_claim(conn, cur, close)
        if role == "naive-pop":

            def naive() -> int:
                if not cur.execute(rs.naive_claim, (queue,)):
                    raise Empty
                cur.execute(rs.naive_read, (queue,))
                taken = cur.fetchall()
                for row in taken:
                    cur.execute(rs.naive_delete, (row[0],))
                return len(taken)

            return _Op(_retrying(naive), close)
        if role == "skip-locked":

            def skip_locked() -> int:
                cur.execute("START TRANSACTION")
                try:
                    cur.execute(rs.skip_locked_take, (queue,))
                    row = cur.fetchone()
                    if row is None:
                        conn.commit()
                        raise Empty
                    cur.execute(rs.skip_locked_delete, (row[0],))
                    conn.commit()
                    return 1
                except MySQLdb.Error:
                    conn.rollback()
                    raise

            return _Op(_retrying(skip_locked), close)
        close()
        raise ValueError(f"unknown reference role {role!r}")

    def _group_claim(self, conn: Any, cur: Any, close: Callable[[], None]) -> _Op:
        """mqlite's own claim / read-back / delete of up to GROUP rows, one statement set in flight."""
        gs, queue, lease_us = bare_group_claim(self.case.table), self.case.queue, 30_000_000
        cur.execute(gs.read_committed)
        cur.execute(gs.connection_id)
        me = int(cur.fetchone()[0])
        last = [datetime(1970, 1, 1)]

        def group() -> int:
            with self._in_flight:
                if not cur.execute(gs.claim, (lease_us, queue, 0, gs.table, queue, GROUP)):
                    raise Empty
                cur.execute(gs.read_back, (last[0], queue))
                rows = cur.fetchall()
                stamp = rows[0][gs.claimed_at_column]
                last[0] = max(r[gs.claimed_at_column] for r in rows)
                keys = [v for r in rows for v in (r[gs.priority_column], r[gs.available_at_column], r[0])]
                cur.execute(gs.delete(len(rows)), (queue, *keys, stamp))
                assert rows[0][gs.owner_column] == me
                return len(rows)

        return _Op(_retrying(group), close)

    def samples(self) -> dict[str, list[float]]:
        return {}

    def close(self) -> None:
        pass
