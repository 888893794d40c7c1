"""Ringing: what a push does so that the listening sessions of a queue (mqlite/wake.py) wake now.

A listening session holds one of the queue's `SLOTS` user-level locks; a push, once committed,
reads who holds them (`IS_USED_LOCK`, cached `HOLDERS_TTL` s per queue: a push to a queue nobody
listens to costs nothing more) and sends each holder `KILL QUERY`, which ends its SLEEP.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Any

import MySQLdb

from . import sql
from .errors import MqliteError
from .pool import Pool

log = logging.getLogger("mqlite.wake")

SLOTS = 16  # listening processes per queue that can be rung; more are served by their own looks
HOLDERS_TTL = 0.5  # seconds a pusher trusts what it read of a queue's listeners
_ER_NO_SUCH_THREAD = 1094
_ER_NOT_OWNER = 1095


def slot_names(database: str, table: str, queue: str) -> list[str]:
    """The lock names of `queue`'s listening slots (user locks are server-wide: the database is in)."""
    digest = hashlib.sha1(f"{database}\0{table}\0{queue}".encode()).hexdigest()[:24]
    return [f"mqlite:wake:{digest}:{n}" for n in range(SLOTS)]


class Ringer:
    """The pushing side of one Queue's doorbell. Thread-safe."""

    def __init__(self, pool: Pool, table: str, *, ringing: bool = True) -> None:
        self._pool, self._table = pool, table
        self.ringing = ringing
        self._holders: dict[str, tuple[float, tuple[int, ...]]] = {}
        # queue -> where its holders were read: (host index, the pool's last connection error). Their
        # ids are rung without a new look only on that host, with no connection lost since: ids are
        # per server and restart with it, so a remembered one may name an unrelated session.
        self._read_on: dict[str, tuple[Any, float]] = {}
        self._refreshing: set[str] = set()  # queues whose holders one pushing thread is reading now
        self._refresh_lock = threading.Lock()

    def ring(self, queue: str, cur: Any = None) -> None:
        """After a push to `queue` committed: end the waits of its listeners. Never raises (a
        lost ring is found by the listeners' next look); `cur` is a cursor to ring on."""
        if not self.ringing:
            return
        now = time.monotonic()
        cached = self._holders.get(queue)
        if cached is not None and not cached[1]:
            if cached[0] > now:
                return  # nobody listens: the common, free case
            # Stale: one pushing thread reads the holders again; the others go on as nobody listened.
            with self._refresh_lock:
                if queue in self._refreshing:
                    return
                self._refreshing.add(queue)
        try:
            if cur is not None:
                self._ring_on(cur, queue, cached, now)
                return
            with self._pool.connection() as conn:
                own = conn.cursor()
                try:
                    self._ring_on(own, queue, cached, now)
                finally:
                    own.close()
        except (MqliteError, MySQLdb.Error) as exc:
            log.debug("could not ring the listeners of %r: %s", queue, exc)
        finally:
            self._refreshing.discard(queue)

    def _ring_on(self, cur: Any, queue: str, cached: tuple[float, tuple[int, ...]] | None, now: float) -> None:
        rung: set[int] = set()
        where = (getattr(cur.connection, "_mqlite_host", None), self._pool._suspect_since)
        if cached is not None and self._read_on.get(queue) != where:
            cached = None  # read elsewhere, or before a connection was lost: look again first
        stale = cached is None or cached[0] <= now
        if cached is not None:
            # The listeners known, even if the cache is stale, first: the wake-up does not wait
            # for the lookup below.
            for holder in cached[1]:
                found = self._kill(cur, holder)
                if found is None:
                    return
                rung.add(holder)
                stale = stale or not found  # a listener gone: another may have taken its place
        if stale:
            cur.execute(sql.wake_holders(SLOTS), slot_names(self._pool.settings.database, self._table, queue))
            row = cur.fetchone()
            holders = tuple(int(h) for h in row if h is not None)
            self._holders[queue] = (now + HOLDERS_TTL, holders)
            self._read_on[queue] = where
            for holder in holders:
                if holder not in rung and self._kill(cur, holder) is None:
                    return

    def _kill(self, cur: Any, holder: int) -> bool | None:
        """End `holder`'s waiting statement: True; False when it is gone; None when this user may
        not (ringing stops)."""
        try:
            cur.execute(sql.WAKE_RING, (holder,))
        except MySQLdb.OperationalError as exc:
            if exc.args[0] == _ER_NOT_OWNER:
                log.warning("cannot wake listeners of another user (KILL refused: needs CONNECTION_ADMIN); "
                            "consumers will find new messages by polling")
                self.ringing = False
                return None
            if exc.args[0] != _ER_NO_SUCH_THREAD:
                raise
            return False
        return True
