"""The optimistic pop, as the Dwango article has it: claim, read on the same connection, delete.

1. `UPDATE … SET owner = CONNECTION_ID() … WHERE owner = 0 ORDER BY id LIMIT n` tags rows atomically;
   two sessions can never tag the same row.
2. `SELECT … WHERE owner = CONNECTION_ID()` on the same physical connection reads them back.
3. `pop` deletes before it returns (at-most-once); `claim` deletes when the handler succeeded
   (at-least-once) and releases the row otherwise. Both are fenced by (id, owner, claimed_at),
   so they never touch a claim that was recovered and taken by someone else.

Why a `Claimer` and not one UPDATE per pop: with many sessions claiming `LIMIT 1` from the head
of the same queue, every session waits on the same first row and each commit wakes them all;
at 64 clients the naive pop collapses to a few hundred messages a second. So, per process and
queue, at most `max_in_flight` claim statements run at once, each claiming one row for every
waiting thread (a group claim), on dedicated sessions at READ COMMITTED (no gap locks, so pushes
never wait behind a claim). Before a fetch, the leader waits up to GATHER (2 ms) for as many
threads as the previous fetch served: a fetch costs nearly the same for 60 rows as for 10, and
this keeps the groups whole (64 threads: 6.3k -> 7.2k msg/s median over 3 alternating runs).
A fetch asks only for rows that waiting threads will take; nothing is claimed for nobody. For
`pop` the same session deletes the whole group in one statement before any of it is handed out.

Claim sessions live outside the pool and are closed only on error or `close()`: a row is owned
by a live session for as long as this process holds it. If the process dies, the session dies
with it and recovery returns the rows.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from .errors import MqliteError, Unavailable
from .message import Message, Receipt
from .sql import Statements

_EPOCH = datetime(1970, 1, 1)
WAIT_SLICE = 1.0  # seconds a thread sleeps on the condition before looking again
GATHER = 0.002  # seconds at most a fetch waits for the threads the previous one served


class _Slot:
    """One waiting thread's place in line: `done` once it has been given a message (or None)."""

    __slots__ = ("message", "done")

    def __init__(self) -> None:
        self.message: Message | None = None
        self.done = False


class _Session:
    """A dedicated claiming connection, and the rows it still owns."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.id = int(raw.thread_id())
        self.last_claim = _EPOCH  # server time of this session's newest claim
        self.out: set[int] = set()  # ids claimed here and not yet deleted or released


class Claimer:
    """Hands out claimed messages of one queue to the threads of one process.

    `consume=True` (for `pop`): rows are deleted before they are handed out.
    `consume=False` (for `claim`): rows stay claimed until `delete` or `release`.
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        translating: Callable[[], AbstractContextManager[None]],
        st: Statements,
        queue: str,
        *,
        consume: bool,
        lease: float = 30.0,
        on_consumed: Callable[[int], None] | None = None,
        max_batch: int = 64,
        max_in_flight: int = 1,
    ) -> None:
        self._connect = connect
        self._translating = translating
        self._st = st
        self.queue = queue
        self.consume = consume
        self.lease_us = int(lease * 1e6)
        self._on_consumed = on_consumed
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        lock = threading.Lock()
        self._cond = threading.Condition(lock)
        self._gathering = _Gathering(lock, max_batch)  # `last`: rows the last fetch brought
        self._buffer: deque[tuple[Message, _Session]] = deque()
        self._idle: list[_Session] = []
        self._sessions: dict[int, _Session] = {}
        self._waiters: deque[_Slot] = deque()  # threads waiting for a message, oldest first
        self._promised = 0  # rows asked for by fetches in flight
        self._in_flight = 0
        self._closed = False

    # -- taking ------------------------------------------------------------------

    def take(self) -> Message | None:
        """A message for the caller, or None when the queue has nothing ready.

        Waiting threads are served first come, first served: a thread that just got a message and
        comes straight back never overtakes one that has been waiting.
        """
        with self._cond:
            if self._buffer and not self._waiters:
                return self._buffer.popleft()[0]
            slot = _Slot()
            self._waiters.append(slot)
            self._gathering.arrived(len(self._waiters) - self._promised)
        while True:
            with self._cond:
                try:
                    while True:
                        if slot.done:
                            return slot.message
                        want = len(self._waiters) - self._promised
                        if want > 0 and self._in_flight < self.max_in_flight:
                            break
                        self._cond.wait(WAIT_SLICE)
                    self._in_flight += 1  # this thread leads the next fetch
                    try:
                        want = self._gather()
                    except BaseException:
                        self._in_flight -= 1  # someone else must be able to lead
                        self._cond.notify_all()
                        raise
                except BaseException:
                    self._abandon(slot)
                    raise
                if want <= 0:  # the waiters left meanwhile
                    self._in_flight -= 1
                    self._cond.notify_all()
                    continue
                want = min(want, self.max_batch)
                self._promised += want
                session = self._idle.pop() if self._idle else None
            self._fetch_for_waiters(slot, session, want)

    def _gather(self) -> int:
        """Before a fetch, give the threads the last fetch served a moment to come back (holding
        the lock); returns how many rows to ask for.

        A fetch costs about the same for 10 rows as for 60 (two commits); without this, the next
        fetch starts as soon as the first thread is back, and the groups settle at a few rows each.
        """
        return self._gathering.wait(lambda: len(self._waiters) - self._promised)

    def _fetch_for_waiters(self, slot: _Slot, session: _Session | None, want: int) -> None:
        """Run one fetch as the waiting threads' leader and hand out what it brought."""
        got: list[Message] = []
        error: BaseException | None = None
        before = session.last_claim if session is not None else _EPOCH
        try:
            with self._translating():
                if session is None:
                    session = _Session(self._connect())
                    with self._cond:
                        self._sessions[session.id] = session
                got = self._fetch(session, want)
        except BaseException as exc:
            error = exc
            if session is not None and not self._recovered_from(exc, session, before):
                self._drop(session)  # rows it claimed become orphans; recovery returns them
        surplus: list[tuple[Message, _Session]] = []
        with self._cond:
            self._in_flight -= 1
            self._promised -= want
            if session is not None and error is None and not self._closed:
                self._idle.append(session)
            self._buffer.extend((m, session) for m in got)
            if got:
                self._gathering.last = len(got)
            self._serve()
            if error is None and not got and not self._in_flight:
                # Nothing ready, and no other fetch that could still bring something: everyone
                # waiting now leaves empty-handed.
                while self._waiters:
                    self._waiters.popleft().done = True
            if self._buffer and not self._waiters and not self.consume:
                # Rows for threads that gave up meanwhile: give them back rather than hoard them.
                surplus, self._buffer = list(self._buffer), deque()
            if error is not None:
                self._abandon(slot)
            self._cond.notify_all()
        for message, owner in surplus:
            self.release_on(owner, message)
        if error is not None:
            raise error

    def _serve(self) -> None:
        """Hand buffered rows to waiting threads, longest-waiting first (holding the lock)."""
        while self._buffer and self._waiters:
            slot = self._waiters.popleft()
            slot.message = self._buffer.popleft()[0]
            slot.done = True

    def _abandon(self, slot: _Slot) -> None:
        """A waiting thread leaves (an exception): never lose a message already handed to it."""
        if slot.done:
            if slot.message is not None:
                self._buffer.appendleft((slot.message, self._sessions.get(slot.message.owner)))  # type: ignore[arg-type]
        else:
            try:
                self._waiters.remove(slot)
            except ValueError:
                pass

    def _fetch(self, session: _Session, want: int) -> list[Message]:
        """Claim up to `want` rows on `session` and read back exactly those (deleting them if consuming)."""
        st = self._st
        cur = session.raw.cursor()
        try:
            claimed = cur.execute(st.claim, (self.lease_us, self.queue, st.table, self.queue, want))
            if not claimed:
                return []
            # NOW(6) differs between statements of one session, so this claim's rows are the ones
            # newer than the session's previous claim; rows still out elsewhere are not re-read.
            cur.execute(st.read_claimed_since, (session.last_claim, self.queue))
            rows = [Message.from_row(r) for r in cur.fetchall()]
            if len(rows) != claimed:
                # The server clock stepped back: read every row this session owns, minus those out.
                cur.execute(st.read_claimed, (self.queue,))
                rows = [m for m in map(Message.from_row, cur.fetchall()) if m.id not in session.out]
            for m in rows:
                if m.claimed_at is not None and m.claimed_at > session.last_claim:
                    session.last_claim = m.claimed_at
            if self.consume:
                return self._delete_group(cur, session, rows)
        finally:
            cur.close()
        with self._cond:
            session.out.update(m.id for m in rows)
        return rows

    def _delete_group(self, cur: Any, session: _Session, rows: list[Message]) -> list[Message]:
        deleted = 0
        for stamp in {m.claimed_at for m in rows}:
            keys = [v for m in rows if m.claimed_at == stamp for v in (m.available_at, m.id)]
            statement = self._st.in_list(self._st.delete_claimed, len(keys) // 2, "(%s,%s)")
            deleted += cur.execute(statement, (self.queue, *keys, stamp))
        if self._on_consumed is not None:
            self._on_consumed(deleted)
        if deleted == len(rows):
            return rows
        # Some row was not ours to delete any more (the session was killed and its rows
        # recovered meanwhile): hand out only what is provably gone from the table.
        cur.execute(self._st.in_list(self._st.present, len(rows)), [m.id for m in rows])
        still_there = {int(r[0]) for r in cur.fetchall()}
        return [m for m in rows if m.id not in still_there]

    def _recovered_from(self, exc: BaseException, session: _Session, before: datetime) -> bool:
        """After a failed fetch on a live session, put back what this fetch claimed; True if done.

        A lock conflict (a deadlock, or a Galera certification conflict reported on the statement
        after the claim) leaves the session alive, and it may still own rows handed out earlier that
        are being worked on: closing it would make those look orphaned and be delivered twice.
        So only a lost connection closes the session; otherwise the rows this fetch claimed (newer
        than `before`) are released on it.
        """
        if not isinstance(exc, MqliteError) or isinstance(exc, Unavailable) or not session.raw.open:
            return False
        try:
            with self._translating():
                cur = session.raw.cursor()
                try:
                    cur.execute(self._st.release_since, (before,))
                finally:
                    cur.close()
        except MqliteError:
            return False
        session.last_claim = before
        return True

    # -- finishing -----------------------------------------------------------------

    def done_id(self, owner: int, message_id: int) -> None:
        """Forget a message that was deleted, released or lost."""
        with self._cond:
            session = self._sessions.get(owner)
            if session is not None:
                session.out.discard(message_id)

    def release_on(self, session: _Session, message: Message) -> None:
        try:
            cur = session.raw.cursor()
            try:
                release(cur, self._st, message.receipt, 0)
            finally:
                cur.close()
        except Exception:
            self._drop(session)  # its rows become orphans; recovery returns them
        finally:
            self.done_id(message.owner, message.id)

    def _drop(self, session: _Session) -> None:
        with self._cond:
            self._sessions.pop(session.id, None)
            if session in self._idle:
                self._idle.remove(session)
            if not self.consume:
                # Rows of a lost session can no longer pass their fence; forget them.
                self._buffer = deque((m, s) for m, s in self._buffer if s is not session)
        try:
            session.raw.close()
        except Exception:
            pass

    def close(self) -> list[Message]:
        """Close the claim sessions; returns consumed messages never handed out (normally none).

        Claimed rows not yet handed out are released first. Rows still inside a `claim` block
        become orphans when their session closes, and come back by recovery.
        """
        with self._cond:
            self._closed = True
            buffered = list(self._buffer)
            self._buffer.clear()
            sessions = list(self._sessions.values())
            self._sessions.clear()
            self._idle.clear()
        if not self.consume:
            for message, session in buffered:
                self.release_on(session, message)
        for session in sessions:
            try:
                session.raw.close()
            except Exception:
                pass
        return [m for m, _ in buffered] if self.consume else []


class GroupAck:
    """Acknowledgements from many threads, deleted together: whatever arrives while one DELETE runs
    goes into the next (a group commit), instead of a statement and a commit per message. Like a
    fetch, a group waits up to GATHER for as many acks as the last one had (64 claiming threads:
    14 -> 25-30 acks per DELETE, server CPU per claimed message 123-127 -> 114-118 us).

    `delete_many(receipts)` deletes what it can and returns the ids it deleted.
    """

    _MAX = 500  # receipts per statement

    def __init__(self, delete_many: Callable[[list[Receipt]], set[int]]) -> None:
        self._delete_many = delete_many
        lock = threading.Lock()
        self._cond = threading.Condition(lock)
        self._gathering = _Gathering(lock, self._MAX)  # `last`: acks in the last group
        self._pending: list[_Ack] = []
        self._busy = False

    def ack(self, r: Receipt) -> bool:
        """Delete one claimed message (in the next group); False if its claim was lost."""
        mine = _Ack(r)
        with self._cond:
            self._pending.append(mine)
            self._gathering.arrived(len(self._pending))
            while not mine.done:
                if not self._busy:
                    self._busy = True
                    try:
                        self._gather()
                    except BaseException:
                        self._busy = False  # the next ack leads; this one stays pending and goes with it
                        self._cond.notify_all()
                        raise
                    batch, self._pending = self._pending[: self._MAX], self._pending[self._MAX :]
                    self._gathering.last = len(batch)
                    break
                self._cond.wait(WAIT_SLICE)
            else:
                return mine.result()
        try:
            deleted = self._delete_many([a.receipt for a in batch])
            for a in batch:
                a.deleted = a.receipt.id in deleted
        except BaseException as exc:
            for a in batch:
                a.error = exc
        finally:
            with self._cond:
                self._busy = False
                for a in batch:
                    a.done = True
                self._cond.notify_all()
        return mine.result()


    def _gather(self) -> None:
        """Wait for as many acks as the last group had (holding the lock), so that the handlers of
        one claimed group are acknowledged by one DELETE, not by two or three."""
        self._gathering.wait(lambda: len(self._pending))


class _Gathering:
    """A group leader's short wait for company, under its owner's lock: until as many members as
    the last group had are there (`last`, at most `limit`), and never longer than GATHER seconds.
    Free when enough are there already, so a lone consumer never waits."""

    __slots__ = ("_arrived", "_limit", "last", "_target")

    def __init__(self, lock: threading.Lock, limit: int) -> None:
        self._arrived = threading.Condition(lock)
        self._limit = limit
        self.last = 1
        self._target = 0  # members a waiting leader wants (0: nobody waiting)

    def arrived(self, count: int) -> None:
        """Another member is there (`count` now): wake the leader once its target is reached."""
        if self._target and count >= self._target:
            self._arrived.notify()

    def wait(self, count: Callable[[], int]) -> int:
        """Wait until `count()` reaches the target or GATHER passes; returns `count()`."""
        target = min(self.last, self._limit)
        if count() < target:
            self._target = target
            deadline = time.monotonic() + GATHER
            try:
                while count() < target and (left := deadline - time.monotonic()) > 0:
                    self._arrived.wait(left)
            finally:
                self._target = 0
        return count()


class _Ack:
    __slots__ = ("receipt", "done", "deleted", "error")

    def __init__(self, receipt: Receipt) -> None:
        self.receipt = receipt
        self.done = False
        self.deleted = False
        self.error: BaseException | None = None

    def result(self) -> bool:
        if self.error is not None:
            raise self.error
        return self.deleted


# -- settling a claim: each one fenced statement, on any connection ---------------------------


def ack(cur: Any, st: Statements, r: Receipt) -> bool:
    """Delete a claimed message. False if the claim was lost (recovered and maybe re-taken)."""
    return cur.execute(st.ack, r.fence()) == 1


def release(cur: Any, st: Statements, r: Receipt, delay_us: int) -> bool:
    """Put a claimed message back, available after `delay_us`, without counting an attempt."""
    return cur.execute(st.release, (delay_us, delay_us, *r.fence())) == 1


def retry_later(cur: Any, st: Statements, r: Receipt, attempts: int, error: str, delay_us: int) -> bool:
    """Record a failed attempt; the message is available again after `delay_us`."""
    return cur.execute(st.retry_later, (attempts, error, delay_us, delay_us, *r.fence())) == 1


def fail(cur: Any, st: Statements, r: Receipt, attempts: int, error: str) -> bool:
    """Record a failed attempt and take the message out of the ready set for good (until retried)."""
    return cur.execute(st.fail, (attempts, error, *r.fence())) == 1


def extend(cur: Any, st: Statements, r: Receipt, lease_us: int) -> bool:
    """Make a claim's lease run until `lease_us` from now."""
    return cur.execute(st.extend, (lease_us, *r.fence())) == 1


def checkpoint(cur: Any, st: Statements, r: Receipt, cursor: str, progress: float | None, lease_us: int) -> bool:
    """Save a handler's resume point on a claimed message and renew its lease."""
    return cur.execute(st.checkpoint, (cursor, progress, lease_us, *r.fence())) == 1
