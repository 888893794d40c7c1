"""The claim sessions of one Queue: dedicated connections, shared by every queue name, bounded.

A claimed row is owned by the session that claimed it, for as long as that session lives: if the
process dies, the session dies with it and recovery returns the row. So a session is closed only
when it owns nothing (or its connection broke). Sessions live outside the pool, because the claim
and its read-back must run on one physical connection, and at READ COMMITTED (no gap locks, so a
push never waits behind a claim).

Any queue may claim on any session (the claim statement names its queue; the session id is the
owner either way), so a process that touches thousands of queue names still holds at most
`limit` claim sessions; one idle for `idle_timeout` seconds and owning nothing is closed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any

from . import protocol
from .errors import MqliteError, Unavailable
from .protocol import Session
from .sql import Statements


class ClaimSessions:
    """At most `limit` claim sessions; `hold()` lends one to a single claim at a time."""

    def __init__(
        self,
        connect: Callable[[], Any],
        translating: Callable[[], AbstractContextManager[None]],
        st: Statements,
        *,
        limit: int = 8,
        idle_timeout: float = 5.0,
        wait_timeout: float = 10.0,
    ) -> None:
        if limit < 1:
            raise ValueError("claim_sessions must be at least 1")
        self._connect = connect
        self._translating = translating
        self._st = st
        self.limit = limit
        self.idle_timeout = idle_timeout
        self.wait_timeout = wait_timeout
        self._cond = threading.Condition()
        self._idle: list[Session] = []  # most recently used last: the others age out
        self._all: list[Session] = []
        self._opening = 0

    @property
    def open(self) -> int:
        """How many claim sessions are open now."""
        return len(self._all)

    @contextmanager
    def hold(self) -> Iterator[Session]:
        """A session for one claim (fetch). Raises Unavailable when none frees up in `wait_timeout`.

        A claim that fails half-way puts back what it claimed on a live session; a session whose
        connection broke is closed, and the rows it claimed come back by recovery.
        """
        session = self._acquire()
        before = session.last_claim
        try:
            with self._translating():
                yield session
        except BaseException as exc:
            self._release(session, ok=self._undo(session, exc, before))
            raise
        self._release(session, ok=True)

    def settled(self, owner: int, message_id: int) -> None:
        """A message claimed on session `owner` was deleted, released or lost: it owns it no more."""
        for session in self._all:
            if session.id == owner:
                session.out.discard(message_id)

    def close(self) -> None:
        """Close every claim session. Rows still claimed on them become orphans (recovery returns them)."""
        with self._cond:
            idle, self._all, self._idle = self._idle, [], []
            self._cond.notify_all()
        for session in idle:
            _close(session)  # one lent out now is closed when its claim gives it back

    # -- lending ---------------------------------------------------------------------------------

    def _acquire(self) -> Session:
        deadline = time.monotonic() + self.wait_timeout
        with self._cond:
            while True:
                if self._idle:
                    return self._idle.pop()
                if len(self._all) + self._opening < self.limit:
                    self._opening += 1
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    err = Unavailable(
                        f"all {self.limit} claim sessions busy for {self.wait_timeout:g}s (raise claim_sessions)"
                    )
                    err.transient = False
                    raise err
                self._cond.wait(left)
        try:
            with self._translating():
                session = Session(self._connect())
        except BaseException:
            with self._cond:
                self._opening -= 1
                self._cond.notify()
            raise
        with self._cond:
            self._opening -= 1
            self._all.append(session)
        return session

    def _release(self, session: Session, ok: bool) -> None:
        with self._cond:
            if ok and session in self._all:
                session.idle_since = time.monotonic()
                self._idle.append(session)
                ok = True
            else:
                ok = False
                if session in self._all:
                    self._all.remove(session)
            self._cond.notify()
        if not ok:
            _close(session)
        self.retire_idle()

    def retire_idle(self) -> int:
        """Close the sessions idle for `idle_timeout` that own nothing; returns how many closed.

        A session that still owns rows stays open (its rows would look orphaned otherwise), and
        becomes the next one lent, so the sessions that own nothing are the ones that age out.
        """
        cutoff = time.monotonic() - self.idle_timeout
        with self._cond:
            stale = [s for s in self._idle if s.idle_since < cutoff]
            for s in stale:
                self._idle.remove(s)
        closed = 0
        for session in stale:
            if session.out:
                self._refresh_owned(session)
            with self._cond:
                if session.out and session in self._all:
                    session.idle_since = time.monotonic()
                    self._idle.append(session)
                    continue
                if session in self._all:
                    self._all.remove(session)
                self._cond.notify()
            _close(session)
            closed += 1
        return closed

    def _refresh_owned(self, session: Session) -> None:
        """Forget rows the session no longer owns (acknowledged by another process, recovered)."""
        try:
            with self._translating():
                cur = session.raw.cursor()
                try:
                    session.out &= protocol.owned(cur, self._st)
                finally:
                    cur.close()
        except MqliteError:
            session.out.clear()  # its connection broke: what it owned is recovery's now

    def _undo(self, session: Session, exc: BaseException, before: datetime) -> bool:
        """After a failed claim on a live session, put back what it claimed; True if the session stays.

        A lock conflict (a deadlock, or a Galera certification conflict reported on the statement
        after the claim) leaves the session alive, and it may still own rows handed out earlier that
        are being worked on: closing it would make those look orphaned and be delivered twice. So
        only a lost connection closes it; otherwise the rows claimed after `before` are released.
        """
        if not isinstance(exc, MqliteError) or isinstance(exc, Unavailable) or not session.raw.open:
            return False
        try:
            with self._translating():
                cur = session.raw.cursor()
                try:
                    protocol.release_since(cur, self._st, before)
                finally:
                    cur.close()
        except MqliteError:
            return False
        session.last_claim = before
        return True


def _close(session: Session) -> None:
    try:
        session.raw.close()
    except Exception:
        pass
