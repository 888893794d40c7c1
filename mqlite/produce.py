"""Putting messages in: `push` (one tuned INSERT) and `push_many` (one transaction), on mqlite's own
connections or, with `connection=`, on the caller's inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from . import retry, sql
from .base import QueueCore
from .config import check_count, check_key, check_priority, check_queue, delay_us
from .errors import DatabaseError, Duplicate, PayloadTooLarge
from .message import Body, as_bytes
from .txn import Borrowed, borrow, driver_of

STATEMENT_HEADROOM = 1024  # bytes kept free in a packet for the statement text around the values
_MAX_ROWS_PER_INSERT = 1000
_MAX_INSERT_BYTES = 4 << 20  # a multi-row INSERT larger than this gains nothing and holds locks longer
ER_DUP_ENTRY = 1062
_ESCAPED = b"\0\n\r\\'\"\x1a"  # the bytes MySQL's string escaping doubles up (both drivers)
# One message's values: queue, body, delay in microseconds, unique key, max attempts, concurrency key,
# priority.
Row = tuple[str, bytes, int, str | None, int | None, str | None, int]


class Producing(QueueCore):
    def push(
        self,
        queue: str,
        body: Body,
        *,
        delay: float | None = None,
        run_at: datetime | None = None,
        unique_key: str | None = None,
        if_exists: Literal["raise", "ignore"] = "raise",
        max_attempts: int | None = None,
        concurrency_key: str | None = None,
        max_running: int = 1,
        priority: int = 0,
        connection: Any = None,
    ) -> int:
        """Append one message; returns its id.

        `delay` seconds or `run_at` (converted to a delay on this machine's clock) hide it until
        then. With `unique_key`, a second push of the same key while the first is in the table
        raises Duplicate (`if_exists="ignore"`: returns the existing id), and a push retried after
        a lost connection is idempotent. Without one, a retry after a lost reply may store the
        message twice (at-least-once). With `concurrency_key`, at most `max_running` messages of
        that key (across queues, consumers and processes) are handed out at once; the others wait.
        `priority` (-32768 to 32767): lower is handed out first; first in first out within one.
        PayloadTooLarge is raised before anything is sent.

        With `connection` (see `mqlite.txn`), the INSERT runs on the caller's connection inside the
        caller's transaction: no consumer sees the message before the caller commits, and a rollback
        takes it back. Nothing is retried, committed or rolled back there; Duplicate leaves the
        transaction usable. A message with a `concurrency_key` is let in (promoted) after the commit.
        """
        name = check_queue(queue)
        data = as_bytes(body)
        if if_exists not in ("raise", "ignore"):
            raise ValueError("if_exists must be 'raise' or 'ignore'")
        rank = check_priority(priority)
        if (connection is not None and delay is None and run_at is None and unique_key is None
                and max_attempts is None and concurrency_key is None and not rank):
            return self._push_plain_on(connection, name, data)
        wait_us = delay_us(delay, run_at)
        key = check_key(unique_key, "unique_key")
        limit = None if max_attempts is None else check_count(max_attempts)
        ckey = check_key(concurrency_key, "concurrency_key")
        if ckey is not None:
            check_count(max_running, "max_running")
        row: Row = (name, data, wait_us, key, limit, ckey, rank)
        if connection is not None:
            return self._push_on(borrow(connection), row, if_exists, max_running)
        tries = 0

        def attempt() -> int:
            nonlocal tries
            tries += 1
            with self._pool.connection() as conn:
                self._check_fits(conn, name, data)
                cur = conn.cursor()
                if ckey is not None:
                    cur.execute(self._sql.set_cap, (self.table, ckey, max_running, max_running))
                new_id = self._insert(cur, row)
                self.doorbell.ring(name, cur)  # committed (autocommit): wake its idle consumers
                cur.close()
                return new_id

        try:
            new_id = retry.call(self._policy, attempt)
        except DatabaseError as exc:
            if exc.code != ER_DUP_ENTRY or key is None:
                raise
            found = self._fetch(self._sql.find_unique, (name, key))
            existing = int(found[0][0]) if found else None
            # On a retry, the row with our key is our own first attempt, committed before its reply was lost.
            if existing is not None and (if_exists == "ignore" or tries > 1):
                return existing
            raise Duplicate(
                f"queue {name!r} already holds a message with unique key {key!r} (id {existing})", existing
            ) from None
        if ckey is not None:
            self._promote(ckey)
            self.doorbell.ring(name)  # the push above rang while it was parked
        return new_id

    def push_many(self, queue: str, bodies: Iterable[Body], *, priority: int = 0, connection: Any = None) -> list[int]:
        """Append many messages in one transaction (all or none), all of `priority`; returns their ids in order.

        With `connection`, in the caller's transaction instead (on a connection in autocommit
        mode, each INSERT of up to 1000 bodies and 4 MiB commits by itself).
        """
        name = check_queue(queue)
        rank = check_priority(priority)
        datas = [as_bytes(b) for b in bodies]
        if not datas:
            return []
        if connection is not None:
            return self._push_many_on(borrow(connection), name, datas, rank)

        def attempt() -> list[int]:
            with self._pool.connection() as conn:
                chunks = self._plan_chunks(conn, name, datas)
                increment = self._pool.server.auto_increment_increment if self._pool.server else 1
                cur = conn.cursor()
                # One statement is atomic by itself under autocommit: the transaction (two more
                # round trips) is needed only when the bodies take several statements.
                several = len(chunks) > 1
                if several:
                    cur.execute("START TRANSACTION")
                ids = self._insert_chunks(cur, name, chunks, increment, rank)
                if several:
                    conn.commit()
                self.doorbell.ring(name, cur)
                cur.close()
                return ids

        return retry.call(self._policy, attempt)

    def _insert(self, cur: Any, row: Row) -> int:
        name, data, wait_us, key, limit, ckey, rank = row
        if ckey is not None:
            cur.execute(self._sql.push_keyed, row)
        elif wait_us or key is not None or limit is not None or rank:
            cur.execute(self._sql.push_with, (name, data, wait_us, key, limit, rank))
        else:
            cur.execute(self._sql.push, (name, data))
        return int(cur.lastrowid)

    def _insert_chunks(self, cur: Any, name: str, chunks: list[list[bytes]], increment: int, rank: int) -> list[int]:
        ids: list[int] = []
        for chunk in chunks:
            params: list[Any] = []
            for data in chunk:
                params += (name, data, rank) if rank else (name, data)
            cur.execute(self._sql.push_many(len(chunk), ranked=bool(rank)), params)
            # A multi-row INSERT with known row count takes consecutive auto-increment
            # values (InnoDB reserves them at once, in every autoinc lock mode).
            first = int(cur.lastrowid)
            ids.extend(first + i * increment for i in range(len(chunk)))
        return ids

    # -- on the caller's connection, in its transaction (`connection=`) ------------------------

    def _push_plain_on(self, conn: Any, name: str, data: bytes) -> int:
        # The common case, which runs in the caller's transaction between the application's own
        # statements: kept to the INSERT and what it needs (every call here costs the caller).
        driver = driver_of(conn)
        server = self._pool.server
        if (driver is None or server is None
                or 2 * len(data) + 8 * len(name) + STATEMENT_HEADROOM > server.max_allowed_packet):
            # A framework's connection, the first push of this Queue, or a body to measure exactly.
            return self._push_on(borrow(conn), (name, data, 0, None, None, None, 0), "raise", 1)
        try:
            cur = conn.cursor()
            try:
                cur.execute(self._sql.push, (name, data))
                return int(cur.lastrowid)
            finally:
                cur.close()
        except driver.Error as exc:
            raise Borrowed(conn, driver).translate(exc, self.settings) from exc

    def _push_on(self, held: Borrowed, row: Row, if_exists: str, max_running: int) -> int:
        name, data, _, key, _, ckey, _ = row
        self._know_server(held)
        self._check_fits(None, name, data)
        if ckey is not None:
            # The key's cap is written on mqlite's own connection and committed at once: in the
            # caller's transaction, its row lock would hold up every promotion of that key (the
            # acks of other messages) until the caller commits. A cap left by a rolled-back push
            # is harmless: it only says how many of the key may run.
            self._execute(self._sql.set_cap, (self.table, ckey, max_running, max_running))
        # InnoDB takes back only the failing statement on a duplicate key, so the caller's
        # transaction stays usable either way; the savepoint (one round trip, unique-key pushes
        # only) keeps "a refused push leaves nothing behind" true whatever the push sends. In
        # autocommit mode there is no transaction to protect (and a savepoint would not outlive
        # its own statement).
        try:
            guarded = key is not None and not held.autocommit()
            cur = held.raw.cursor()
            try:
                if guarded:
                    cur.execute(sql.PUSH_SAVEPOINT)
                new_id = self._insert(cur, row)
            except held.driver.Error as exc:
                if key is None or not exc.args or exc.args[0] != ER_DUP_ENTRY:
                    raise
                return self._duplicate_on(cur, guarded, name, key, if_exists)
            finally:
                cur.close()
        except held.driver.Error as exc:
            raise held.translate(exc, self.settings) from exc
        if ckey is not None:
            # Parked until promoted, and a promotion cannot see it before the caller commits: it
            # runs after the commit where the framework tells us (Django, SQLAlchemy Session), at
            # once in autocommit mode, else at the next promotion of the key (an ack of another
            # of its messages) or consumers' housekeeping (`recover()`, every `recover_every`).
            def promote() -> None:
                self._promote(ckey)

            if held.autocommit():
                promote()
            else:
                held.after_commit(promote)
        # Idle consumers see the message once the caller commits: ring then, where the framework
        # tells us (else `Queue.ring` after the commit, or they find it by their bounded look).
        if held.autocommit():
            self.doorbell.ring(name)
        else:
            held.after_commit(lambda: self.doorbell.ring(name))
        return new_id

    def _duplicate_on(self, cur: Any, guarded: bool, name: str, key: str, if_exists: str) -> int:
        if guarded:
            cur.execute(sql.UNDO_PUSH)
        cur.execute(self._sql.find_unique_locked, (name, key))
        found = cur.fetchone()
        existing = int(found[0]) if found else None
        if existing is not None and if_exists == "ignore":
            return existing
        raise Duplicate(
            f"queue {name!r} already holds a message with unique key {key!r} (id {existing})", existing
        ) from None

    def _push_many_on(self, held: Borrowed, name: str, datas: list[bytes], rank: int) -> list[int]:
        self._know_server(held)
        chunks = self._plan_chunks(None, name, datas)
        assert self._pool.server is not None
        try:
            cur = held.raw.cursor()
            try:
                return self._insert_chunks(cur, name, chunks, self._pool.server.auto_increment_increment, rank)
            finally:
                cur.close()
        except held.driver.Error as exc:
            raise held.translate(exc, self.settings) from exc

    def _know_server(self, held: Borrowed) -> None:
        """Learn max_allowed_packet (for the size checks) once per Queue: on the caller's connection
        (one SELECT of server variables, no table read) only if mqlite has not connected itself."""
        if self._pool.server is None:
            try:
                self._pool._probe(held.raw)
            except held.driver.Error as exc:
                raise held.translate(exc, self.settings) from exc

    def _check_fits(self, conn: Any, queue: str, data: bytes) -> None:
        limit = self._pool.server.max_allowed_packet if self._pool.server else 0
        if limit and self._escaped_size(conn, data, limit) + len(queue) * 8 + STATEMENT_HEADROOM > limit:
            raise PayloadTooLarge(
                f"body of {len(data)} bytes does not fit the server's max_allowed_packet of {limit} bytes"
            )

    @staticmethod
    def _escaped_size(conn: Any, data: bytes, limit: int) -> int:
        # Escaping at most doubles a body; count exactly only when the bound is not enough.
        if 2 * len(data) + STATEMENT_HEADROOM <= limit // 2:
            return 2 * len(data)
        if conn is None:  # a caller's connection, of either driver: count what escaping adds
            return len(data) + sum(data.count(byte) for byte in _ESCAPED)
        return len(conn.escape_string(data))

    def _plan_chunks(self, conn: Any, queue: str, datas: list[bytes]) -> list[list[bytes]]:
        limit = self._pool.server.max_allowed_packet if self._pool.server else 1 << 20
        budget = min(limit, _MAX_INSERT_BYTES) - STATEMENT_HEADROOM
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
