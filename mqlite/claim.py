"""The optimistic pop, as the Dwango article has it: claim, read on the same connection, delete.

1. `UPDATE … SET owner = CONNECTION_ID() … WHERE owner = 0 ORDER BY id LIMIT n` tags rows atomically;
   two sessions can never tag the same row.
2. `SELECT … WHERE owner = CONNECTION_ID()` on the same physical connection reads them back.
3. `pop` deletes before it returns (at-most-once); `claim` deletes when the handler succeeded
   (at-least-once) and releases the row otherwise. Both are fenced by (id, owner, claimed_at),
   so they can run on any connection and never touch a claim that was recovered and re-taken.

Why a `Claimer` and not one UPDATE per pop: with many sessions claiming `LIMIT 1` from the head
of the same queue, every session waits on the same first row and each commit wakes them all;
at 64 clients the naive pop collapses to a few hundred messages a second. So, per process and
queue, at most `max_in_flight` claim statements run at once, each claiming one row for every
thread then waiting (group claim), on dedicated claim connections at READ COMMITTED (no gap
locks, so pushes never wait behind a claim). Rows are never claimed for nobody: a fetch asks for
as many rows as there are waiting threads not already served by another fetch.

Claim connections live outside the pool and are only closed on error or `close()`: a row is
owned by a live session for as long as the process holds it. If the process dies, the session
dies with it and recovery returns the rows.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from .message import Message
from .sql import Statements

_EPOCH = datetime(1970, 1, 1)
WAIT_SLICE = 1.0  # seconds a thread waits for another thread's fetch before looking again


class _ClaimConnection:
    """A dedicated session that claims rows, with the rows it still owns."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.session = int(raw.thread_id())
        self.last_claim = _EPOCH  # server time of this session's newest claim
        self.out: set[int] = set()  # ids claimed here, not yet deleted or released


class Claimer:
    """Hands out claimed messages of one queue to the threads of one process."""

    def __init__(
        self,
        connect: Callable[[], Any],
        translating: Callable[[], AbstractContextManager[None]],
        st: Statements,
        queue: str,
        *,
        max_batch: int = 64,
        max_in_flight: int = 2,
    ) -> None:
        self._connect = connect
        self._translating = translating
        self._st = st
        self.queue = queue
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._cond = threading.Condition()
        self._buffer: deque[tuple[Message, _ClaimConnection]] = deque()
        self._idle: list[_ClaimConnection] = []
        self._sessions: dict[int, _ClaimConnection] = {}
        self._waiting = 0
        self._promised = 0  # rows asked for by fetches in flight
        self._in_flight = 0
        self._empty_epoch = 0  # bumped when a fetch finds the queue empty
        self._closed = False

    # -- taking ------------------------------------------------------------------

    def take(self) -> Message | None:
        """A message claimed for the caller, or None when the queue has nothing ready."""
        with self._cond:
            self._waiting += 1  # counted until this thread leaves with a message or None
            fetching = False
            try:
                epoch = self._empty_epoch
                while True:
                    if self._buffer:
                        return self._hand_out()
                    if self._empty_epoch != epoch:
                        return None
                    want = self._waiting - self._promised
                    if want > 0 and self._in_flight < self.max_in_flight:
                        break
                    self._cond.wait(WAIT_SLICE)
                want = min(want, self.max_batch)
                self._in_flight += 1
                self._promised += want
                conn = self._idle.pop() if self._idle else None
                fetching = True
            finally:
                if not fetching:
                    self._waiting -= 1
        got: list[Message] = []
        error: BaseException | None = None
        try:
            if conn is None:
                conn = _ClaimConnection(self._connect())
                with self._cond:
                    self._sessions[conn.session] = conn
            with self._translating():
                got = self._fetch(conn, want)
        except BaseException as exc:
            error = exc
            if conn is not None:
                self._drop(conn)  # rows it claimed become orphans; recovery returns them
        surplus = 0
        with self._cond:
            self._in_flight -= 1
            self._promised -= want
            self._waiting -= 1
            if conn is not None and error is None and not self._closed:
                self._idle.append(conn)
            mine = None
            if got:
                self._buffer.extend((m, conn) for m in got)
                mine = self._hand_out()
                surplus = len(self._buffer) - self._waiting
            elif error is None:
                self._empty_epoch += 1
            self._cond.notify_all()
        if error is not None:
            raise error
        if surplus > 0:
            self._release_surplus(surplus)
        return mine

    def _hand_out(self) -> Message:
        message, _ = self._buffer.popleft()
        return message

    def _fetch(self, conn: _ClaimConnection, want: int) -> list[Message]:
        """Claim up to `want` rows on `conn` and read back exactly those."""
        st = self._st
        cur = conn.raw.cursor()
        try:
            claimed = cur.execute(st.claim, (self.queue, want))
            if not claimed:
                return []
            # NOW(6) differs between statements of one session, so this claim's rows are the ones
            # newer than the session's previous claim: rows still out elsewhere are not re-read.
            cur.execute(st.read_claimed_since, (self.queue, conn.last_claim))
            rows = [Message.from_row(r) for r in cur.fetchall()]
            if len(rows) != claimed:
                # The server clock stepped back: fall back to every row this session owns,
                # minus those already out.
                cur.execute(st.read_claimed, (self.queue,))
                rows = [m for m in map(Message.from_row, cur.fetchall()) if m.id not in conn.out]
        finally:
            cur.close()
        for m in rows:
            conn.out.add(m.id)
            if m.claimed_at is not None and m.claimed_at > conn.last_claim:
                conn.last_claim = m.claimed_at
        return rows

    def _release_surplus(self, count: int) -> None:
        # Rows fetched for threads that were served by another fetch meanwhile: give them back now
        # rather than hoard them in this process.
        with self._cond:
            surplus = [self._buffer.pop() for _ in range(min(count, len(self._buffer)))]
        for message, conn in surplus:
            self.release_on(conn, message)

    # -- finishing -----------------------------------------------------------------

    def done(self, message: Message) -> None:
        """Forget a message that was deleted, released or lost."""
        with self._cond:
            conn = self._sessions.get(message.owner)
            if conn is not None:
                conn.out.discard(message.id)

    def release_on(self, conn: _ClaimConnection, message: Message) -> None:
        try:
            cur = conn.raw.cursor()
            try:
                release(cur, self._st, message)
            finally:
                cur.close()
        except Exception:
            self._drop(conn)  # its rows become orphans; recovery returns them
        finally:
            self.done(message)

    def _drop(self, conn: _ClaimConnection) -> None:
        with self._cond:
            self._sessions.pop(conn.session, None)
            if conn in self._idle:
                self._idle.remove(conn)
            # Buffered rows of a lost session can no longer be deleted by their fence; forget them.
            self._buffer = deque((m, c) for m, c in self._buffer if c is not conn)
        try:
            conn.raw.close()
        except Exception:
            pass

    def close(self) -> None:
        """Release buffered rows and close the claim sessions (rows still out become orphans)."""
        with self._cond:
            self._closed = True
            buffered = list(self._buffer)
            self._buffer.clear()
        for message, conn in buffered:
            self.release_on(conn, message)
        with self._cond:
            conns = list(self._sessions.values()) + [c for c in self._idle if c.session not in self._sessions]
            self._sessions.clear()
            self._idle.clear()
        for conn in conns:
            try:
                conn.raw.close()
            except Exception:
                pass


def delete(cur: Any, st: Statements, message: Message) -> bool:
    """Delete a claimed message, fenced by its claim. False if the claim was lost."""
    return cur.execute(st.ack, (message.id, message.owner, message.claimed_at)) == 1


def release(cur: Any, st: Statements, message: Message) -> bool:
    """Put a claimed message back in the queue, fenced by its claim. False if the claim was lost."""
    return cur.execute(st.release, (message.id, message.owner, message.claimed_at)) == 1
