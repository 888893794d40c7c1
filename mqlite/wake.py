"""Wake-ups: an idle consumer hears of a push within milliseconds, without polling fast.

MySQL has no LISTEN/NOTIFY; this doorbell is made of what every MySQL and MariaDB has.
- Listening: a Queue opens at most one listening session (dedicated, outside the pool) once a
  consumer of the process waits on an empty queue. For each queue waited on it holds one of
  `SLOTS` user-level locks (`mqlite:wake:<hash>:<n>`) and runs one statement at a time that
  finds when the next message is due (ready: it returns at once), else SLEEPs until then, at
  most `bound` seconds. Local waiters are woken when something is due (`Doorbell.wait`).
- Ringing: a push, once committed, reads who holds the queue's slots (`IS_USED_LOCK`, cached
  `HOLDERS_TTL` s: a push to a queue nobody waits on costs nothing more) and sends each holder
  `KILL QUERY`; its SLEEP ends, and it looks again at once.
No race between "empty" and "waiting": the look runs inside the waiting statement, so a push
committed before that statement began is seen, and a ring sent after it began cuts the SLEEP (a
ring between two statements is dropped by the server, and the next statement's look sees the row).
In the process, a wake-up between a consumer's empty poll and its wait is kept by a generation.

A lost signal costs latency, never a message: consumers always claim, a wake-up only shortens
their wait. Not rung (found by the listener's next look, <= `bound` s): a listener newer than a
pusher's cache (found within HOLDERS_TTL: the looks of the first HOLDERS_TTL after taking a slot
sleep no longer), more than SLOTS listening processes on one queue, a KILL refused (another
user, without CONNECTION_ADMIN: ringing stops), pushes in the caller's transaction on a
plain DB-API connection (call `Queue.ring` after the commit), released or recovered messages. A
broken listening session is reopened with backoff; meanwhile consumers poll on their own
`IdleWait` backoff. Details and the designs weighed: docs/wake.md.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import MySQLdb

from . import sql
from .errors import MqliteError
from .pool import Pool
from .ring import HOLDERS_TTL, SLOTS, Ringer, slot_names
from .sql import Statements

log = logging.getLogger("mqlite.wake")

LINGER = 2.0  # seconds a listener keeps a queue's slot after its last waiter left (pushers stop ringing)
RECONNECT_MAX = 10.0  # the longest pause before reopening a broken listening session
_ER_QUERY_INTERRUPTED = 1317
_READY_STREAK = 3  # looks in a row that found a message but woke nobody who took it: then back off


class _Waiter:
    __slots__ = ("queues", "seen", "callback", "poked")

    def __init__(self, queues: tuple[str, ...], seen: int, callback: Callable[[], object] | None) -> None:
        self.queues, self.seen, self.callback = queues, seen, callback
        self.poked = False


class Doorbell:
    """One Queue's listening session and its pushers' ringing. Thread-safe."""

    def __init__(self, pool: Pool, statements: Statements, table: str, *, bound: float = 1.0,
                 ring: bool = True) -> None:
        if bound <= 0:
            raise ValueError("the wake bound must be positive")
        self._pool, self._sql, self._table = pool, statements, table
        self.bound = bound
        self.ringer = Ringer(pool, table, ringing=ring)
        self._cond = threading.Condition()
        self._gen = 0
        self._waiters: dict[int, _Waiter] = {}
        self._wanted: dict[str, float] = {}  # queue -> when a waiter last waited on it (monotonic)
        self._held: dict[str, str] = {}  # queue -> slot lock the listening session holds
        self._unheard_until: dict[str, float] = {}  # queue -> until when a pusher may not know our slot
        self._listening: tuple[str, ...] = ()  # queues of the statement in flight, () when none
        self._session: Any = None
        self._session_id = 0
        self._thread: threading.Thread | None = None
        self._epoch = 0  # bumped by close: a listener thread of an older epoch ends
        self._old: threading.Thread | None = None  # a closed listener still finishing its statement
        self._pid = os.getpid()

    # -- waiting (consumers) ----------------------------------------------------------

    def ring(self, queue: str, cur: Any = None) -> None:
        """After a push to `queue` committed: end the waits of its listeners (see `Ringer.ring`)."""
        self.ringer.ring(queue, cur)

    @property
    def generation(self) -> int:
        """Bumped at each wake-up: a waiter that saw an older one returns at once."""
        return self._gen

    @property
    def listening(self) -> tuple[str, ...]:
        """The queues the listening session is waiting on right now (() between two looks)."""
        return self._listening

    def wait(self, queues: Sequence[str], seen: int, timeout: float) -> int:
        """Sleep until a wake-up newer than `seen` or `timeout` s; returns the generation now."""
        token = self.subscribe(queues, seen)
        if token is not None:
            try:
                self.wait_subscribed(token, timeout)
            finally:
                self.unsubscribe(token)
        return self._gen

    def wait_subscribed(self, token: int, timeout: float) -> None:
        """Sleep as the waiter `token` until a wake-up newer than it saw, a `poke`, or `timeout` s."""
        with self._cond:
            waiter = self._waiters.get(token)
            if waiter is not None:
                self._cond.wait_for(lambda: self._gen != waiter.seen or waiter.poked, timeout)

    def poke(self, token: int) -> None:
        """End the wait of one waiter (its consumer has news of its own); the others sleep on."""
        with self._cond:
            waiter = self._waiters.get(token)
            if waiter is not None:
                waiter.poked = True
                self._cond.notify_all()

    def subscribe(self, queues: Sequence[str], seen: int, callback: Callable[[], object] | None = None) -> int | None:
        """Register a waiter (`callback` runs on the listener's thread at the wake-up); None when
        a wake-up newer than `seen` already happened. Pair with `unsubscribe`."""
        names = tuple(queues)
        with self._cond:
            if self._gen != seen or not names:
                return None
            if self._pid != os.getpid():  # forked: the parent's session and thread are not ours
                self._pid, self._session, self._thread, self._held, self._listening = os.getpid(), None, None, {}, ()
                self._old = None
            waiter = _Waiter(names, seen, callback)
            token = id(waiter)
            self._waiters[token] = waiter
            now = time.monotonic()
            for q in names:
                self._wanted[q] = now
            restart = bool(self._listening) and not set(names) <= set(self._listening)
            if self._thread is None and (self._old is None or not self._old.is_alive()):
                # (Never two listeners on one session: after a close, the old one ends first.)
                self._thread = threading.Thread(target=self._listen, args=(self._epoch,), name="mqlite-wake",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()
        if restart:
            self._interrupt()
        return token

    def unsubscribe(self, token: int) -> None:
        with self._cond:
            self._waiters.pop(token, None)

    def interrupt_waiters(self) -> None:
        """Wake every local waiter now (a consumer stopping); they poll once and wait again."""
        with self._cond:
            self._bump()

    def close(self) -> None:
        """Stop listening (waiters return at once); the session closes with its thread, within
        2 s (a thread still in a statement then closes it when that ends). Reopened on next use."""
        with self._cond:
            self._epoch += 1
            thread, self._thread = self._thread, None
            self._old = thread
            self._bump()
        if thread is not None and thread.is_alive():
            self._interrupt()
            thread.join(2.0)

    # -- the listening session ---------------------------------------------------------

    def _listen(self, epoch: int) -> None:
        try:
            self._listen_until_closed(epoch)
        finally:
            with self._cond:
                self._listening = ()
                self._drop_session()

    def _listen_until_closed(self, epoch: int) -> None:
        pause = 0.0
        streak = 0
        while True:
            with self._cond:
                active = self._next_active(epoch)
                if active is None:
                    return
                self._listening = active
            try:
                due, rung, bound = self._look(active)
                pause = 0.0
            except (MqliteError, MySQLdb.Error) as exc:
                with self._cond:
                    self._listening = ()
                    self._drop_session()
                    if epoch != self._epoch:
                        return
                    pause = min(RECONNECT_MAX, max(0.5, pause * 2))
                    log.warning("wake-up listener lost its session (%s); retrying in %.1fs", exc, pause)
                    self._bump()  # waiters poll on their own meanwhile
                    self._cond.wait(pause)
                continue
            with self._cond:
                self._listening = ()
                if rung:
                    # Wake at once (the push is committed; a delayed one costs the waiters an
                    # empty poll), and look again: the next look sleeps until what is due.
                    streak = 0
                    self._bump()
                    continue
                if due is None or due > bound:
                    streak = 0
                    continue  # the bound ran out: look again
                streak = streak + 1 if due <= 0 else 0
                self._bump()
                if streak > _READY_STREAK:  # due, but the woken take nothing (e.g. a claim that skips it)
                    self._cond.wait(min(self.bound, 0.01 * 2 ** (streak - _READY_STREAK)))

    def _next_active(self, epoch: int) -> tuple[str, ...] | None:
        """Under the lock: the queues to look at next, once some waiter has not been woken; None: closed."""
        while epoch == self._epoch:
            fresh = [w for w in self._waiters.values() if w.seen == self._gen]
            now = time.monotonic()
            expired = [q for q in self._held if now - self._wanted.get(q, 0.0) >= LINGER]
            if expired and self._session is not None:
                self._leave(expired)
                continue
            if fresh:
                return tuple(sorted({q for w in fresh for q in w.queues}))
            left = [LINGER - (now - self._wanted.get(q, 0.0)) for q in self._held]
            self._cond.wait(max(0.01, min(left)) if left else None)
        return None

    def _look(self, queues: tuple[str, ...]) -> tuple[float | None, bool, float]:
        """One waiting statement: (seconds the next message was due in, rung?, the bound it slept)."""
        if self._session is None:
            self._session = self._pool.open_session()
            cur = self._session.cursor()
            cur.execute(sql.CONNECTION_ID)
            self._session_id = int(cur.fetchone()[0])
            cur.close()
        self._take([q for q in queues if q not in self._held])
        # A pusher that read a queue's slots just before we took ours trusts that read for
        # HOLDERS_TTL and does not ring us meanwhile: until then a look sleeps no longer, so such a
        # push waits at most that long instead of the whole bound.
        now = time.monotonic()
        bound = min([self.bound] + [u - now for q in queues if (u := self._unheard_until.get(q, 0.0)) > now])
        bound = max(bound, 0.001)
        params: list[Any] = [bound]
        for q in queues:
            params += (q, self._table, q)
        cur = self._session.cursor()
        try:
            cur.execute(self._sql.wake_wait(len(queues)), params)
            due, slept = cur.fetchone()
        except MySQLdb.OperationalError as exc:
            if exc.args[0] == _ER_QUERY_INTERRUPTED:
                return None, True, bound
            raise
        finally:
            cur.close()
        return float(due), bool(slept), bound  # MySQL: SLEEP returns 1 when cut short, with no error

    def _take(self, queues: list[str]) -> None:
        for q in queues:
            for name in slot_names(self._pool.settings.database, self._table, q):
                if self._one(sql.WAKE_TAKE_SLOT, name) == 1:
                    self._held[q] = name
                    self._unheard_until[q] = time.monotonic() + HOLDERS_TTL + 0.05
                    break
            else:
                log.info("all %d wake-up slots of queue %r are taken: this process finds it by polling", SLOTS, q)

    def _leave(self, queues: list[str]) -> None:
        try:
            for q in queues:
                self._unheard_until.pop(q, None)
                if self._one(sql.WAKE_LEAVE_SLOT, self._held.pop(q)) is None:
                    # Cut by rings at every try: still held, and forgotten, pushers would ring this
                    # session for ever. Its locks go with it.
                    self._drop_session()
                    return
        except (MqliteError, MySQLdb.Error):
            self._drop_session()

    def _one(self, statement: str, name: str) -> Any:
        """A slot statement on the listening session; a ring landing on it is retried."""
        for _ in range(3):
            cur = self._session.cursor()
            try:
                cur.execute(statement, (name,))
                return cur.fetchone()[0]
            except MySQLdb.OperationalError as exc:
                if exc.args[0] != _ER_QUERY_INTERRUPTED:
                    raise
            finally:
                cur.close()
        return None

    def _bump(self) -> None:
        """Under the lock: wake every waiter."""
        self._gen += 1
        for w in list(self._waiters.values()):
            if w.callback is not None:
                try:
                    w.callback()
                except RuntimeError:  # an event loop already closed
                    pass
        self._cond.notify_all()

    def _drop_session(self) -> None:
        session, self._session, self._held = self._session, None, {}
        if session is not None:
            try:
                session.close()  # its locks go with it
            except MySQLdb.Error:
                pass

    def _interrupt(self) -> None:
        """End the listener's statement in flight (to widen it, or to close)."""
        target = self._session_id
        if not target or not self._listening:
            return
        try:
            with self._pool.connection() as conn:
                cur = conn.cursor()
                cur.execute(sql.WAKE_RING, (target,))
                cur.close()
        except (MqliteError, MySQLdb.Error) as exc:
            log.debug("could not interrupt the wake-up listener: %s", exc)
