"""Pushes and acknowledgements on the caller's connection, inside the caller's transaction.

`Queue.push(…, connection=c)`, `push_many(…, connection=c)` and `ack(…, connection=c)` come here
(`mqlite.txn` says what `c` is). The statements are the library's own; what differs is that
nothing is retried, committed or rolled back on `c`, and that what must follow the commit
(counting an acknowledgement, promoting a message with a concurrency key) runs when the
framework says the caller committed, or at once where nobody can tell.
"""

from __future__ import annotations

from typing import Any

from . import protocol, retry, sql
from .base import QueueCore
from .errors import Duplicate, NotClaimed
from .message import Message
from .produce import ER_DUP_ENTRY, STATEMENT_HEADROOM
from .settle import Claimable
from .txn import Borrowed, borrow, driver_of


class Joining(QueueCore):
    """The part of a Queue that works in a caller's transaction (mixed into `Queue`)."""

    def _push_plain_on(self, conn: Any, name: str, data: bytes) -> int:
        # The common case, which runs in the caller's transaction between the application's own
        # statements: kept to the INSERT and what it needs (every call here costs the caller).
        driver = driver_of(conn)
        server = self._pool.server
        if (driver is None or server is None
                or 2 * len(data) + 8 * len(name) + STATEMENT_HEADROOM > server.max_allowed_packet):
            # A framework's connection, the first push of this Queue, or a body to measure exactly.
            return self._push_on(borrow(conn), (name, data, 0, None, None, None), "raise", 1)
        try:
            cur = conn.cursor()
            try:
                cur.execute(self._sql.push, (name, data))
                return int(cur.lastrowid)
            finally:
                cur.close()
        except driver.Error as exc:
            raise Borrowed(conn, driver).translate(exc, self.settings) from exc

    def _push_on(self, held: Borrowed, row: tuple, if_exists: str, max_running: int) -> int:
        name, data, _, key, _, ckey = row
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

    def _push_many_on(self, held: Borrowed, name: str, datas: list[bytes]) -> list[int]:
        self._know_server(held)
        chunks = self._plan_chunks(None, name, datas)
        assert self._pool.server is not None
        try:
            cur = held.raw.cursor()
            try:
                return self._insert_chunks(cur, name, chunks, self._pool.server.auto_increment_increment)
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

    def _ack_on(self, held: Borrowed, message: Claimable) -> bool:
        r = self._settling(message)
        handle = message._handle if isinstance(message, Message) else None
        _, _, ckey = self._known_of(message, r)
        try:
            cur = held.raw.cursor()
            try:
                done = protocol.ack(cur, self._sql, r)
            finally:
                cur.close()
        except held.driver.Error as exc:
            if handle is not None:
                handle.finished = False  # still ours: the claim block records the failure as usual
            raise held.translate(exc, self.settings) from exc
        # Either way the claim is out of this process's hands: deleted (pending the caller's
        # commit), or lost. Should the caller roll back, the row stays owned by the claim session;
        # it comes back when that session ends (or its lease, without the PROCESS privilege).
        self._sessions.settled(r.owner, r.id)
        if not done:
            raise NotClaimed(
                f"message {r.id}: the claim was lost (recovered after its lease or owner died); "
                "roll back: the message will be delivered again"
            )
        if handle is not None:
            handle.in_transaction = True

        def committed() -> None:
            # Counted once the caller commits where the framework says so (Django, SQLAlchemy
            # Session); on a plain connection nobody can tell, so at once: a rolled-back
            # acknowledgement is then counted, and counted again when the message is done.
            self._counters.add(r.queue, processed=1)
            if ckey is not None:
                self._promote(ckey)  # its slot is free once the DELETE is committed

        if held.autocommit() or not held.after_commit(committed):
            committed()
        return True

    def _nack_if_rolled_back(self, message: Message, error: BaseException) -> bool:
        """A claim block acknowledged in the caller's transaction and then raised: if that
        transaction rolled back (the claim is still held), record the failure like any raise.

        A locking read that skips locked rows tells the cases apart without waiting: the row is
        gone (committed), locked (the caller's transaction is still open around the block: its
        outcome decides), or present and free (rolled back).
        """
        r = message.receipt

        def attempt() -> bool:
            with self._pool.connection() as conn:
                cur = conn.cursor()
                try:
                    cur.execute(self._sql.held_unlocked, r.fence())
                    return cur.fetchone() is not None
                finally:
                    cur.close()

        if not retry.call(self._policy, attempt):
            return False
        message._handle.finished = False
        if isinstance(error, Exception):
            return self.nack(message, error)
        return self.release(message)
