"""The connection pool: DBUtils PooledDB over mysqlclient, and driver-error translation.

Tuned for a queue's short statements: no ping and no rollback on every checkout (each costs a
round trip; together they cut single-row INSERT throughput by 4x). Instead:
- a connection that raised a connection-level error is closed at once and reopened on its next checkout;
- after such an error, every idle connection is pinged once before reuse (a server restart kills them all);
- a connection never goes back to the pool inside a transaction (rolled back, or closed if that fails);
- a checkout waits at most `checkout_timeout` for a free connection, then raises Unavailable.
DBUtils' own transparent failover is switched off: it would silently re-run a statement on a new
connection, which breaks the claim (CONNECTION_ID() changes) and hides a maybe-committed push.
DBUtils is used through its public API only (see `dbutils_problem`, checked when a pool is made).
"""

from __future__ import annotations

import os
import queue
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dbutils
import MySQLdb
from dbutils.pooled_db import PooledDB
from dbutils.steady_db import SteadyDBConnection

from . import sql
from .config import Settings
from .connector import Connector, translate
from .errors import ConfigError, DatabaseError, MqliteError, Unavailable
from .retry import CONNECTION_LOST


class _NeverRaised(Exception):
    """Given to DBUtils as its 'failures' so that its failover never triggers."""


DBUTILS_NEEDED = "DBUtils>=3.2,<4"


def dbutils_problem() -> str | None:
    """Why the installed DBUtils cannot serve this pool, or None.

    The pool reads the raw connection through `dbapi_connection` (public from DBUtils 3.2 on) and
    relies on PooledDB's documented `ping` callable and `creator` (see `_Creator`); a DBUtils
    without them would fail mid-checkout with an AttributeError from its proxy, so say it up front.
    """
    version = getattr(dbutils, "__version__", "?")
    if not isinstance(getattr(SteadyDBConnection, "dbapi_connection", None), property):
        return (f"DBUtils {version} has no SteadyDBConnection.dbapi_connection; "
                f"mqlite needs {DBUTILS_NEEDED} (pip install '{DBUTILS_NEEDED}')")
    major = version.split(".", 1)[0]
    if not major.isdigit() or int(major) != 3:
        return f"DBUtils {version} is not a version mqlite was tested with; it needs {DBUTILS_NEEDED}"
    return None


@dataclass(frozen=True)
class ServerInfo:
    max_allowed_packet: int
    auto_increment_increment: int
    version: str

    @property
    def is_mariadb(self) -> bool:
        return "mariadb" in self.version.lower()


_pools: weakref.WeakSet[Pool] = weakref.WeakSet()


def _forget_pools_after_fork() -> None:
    # A forked child must not touch the parent's sockets: closing them would send COM_QUIT
    # and kill the parent's sessions (and their claims). Start over with fresh connections.
    for pool in list(_pools):
        pool._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools_after_fork)


class Pool:
    """A bounded, lazily created pool of autocommit connections to one server."""

    def __init__(
        self,
        settings: Settings,
        *,
        size: int = 10,
        connect_timeout: float = 5.0,
        checkout_timeout: float = 10.0,
        read_timeout: float | None = 60.0,
        routing: str = "single",
        first_connect_retry_for: float | None = None,
    ) -> None:
        """`first_connect_retry_for`: until a first connection succeeds, a refused one stops being
        transient (worth retrying) after this many seconds; None: no such limit. For commands a
        person waits on; long-lived processes keep retrying through a server restart."""
        if size < 1:
            raise ValueError("pool size must be at least 1")
        if routing not in ("single", "spread"):
            raise ValueError("routing must be 'single' (one primary, next host on failure) or 'spread'")
        problem = dbutils_problem()
        if problem:
            raise ConfigError(problem)
        self.settings = settings
        self.size = size
        self.checkout_timeout = checkout_timeout
        kwargs = settings.connect_kwargs()
        kwargs.setdefault("connect_timeout", max(1, int(-(-connect_timeout // 1))))
        if read_timeout:
            # A hung server must not hang a web request forever; generous enough for lock waits.
            kwargs.setdefault("read_timeout", max(1, int(-(-read_timeout // 1))))
            kwargs.setdefault("write_timeout", max(1, int(-(-read_timeout // 1))))
        # utf8mb4_bin to match the queue column: compared under the server's default (case-
        # insensitive) collation, `queue = %s` no longer yields rows in index order, and every
        # claim would sort the whole queue.
        kwargs.update(autocommit=True, charset="utf8mb4", collation="utf8mb4_bin")
        self._connector = Connector(settings, kwargs, routing)
        self._creator = _Creator(self._connector)
        self._lock = threading.Lock()
        self._db: PooledDB | None = None
        # (DBUtils pooled connection of self._db, the raw connection inside it), idle, newest last.
        # A new list whenever self._db changes: a connection goes back only to the list it came from.
        self._warm: list[tuple[Any, Any]] = []
        self._slots = _Slots(size)
        self._suspect_since = 0.0  # monotonic time of the last connection-level error
        self.first_connect_retry_for = first_connect_retry_for
        self._first_failure: float | None = None  # monotonic time the first connection first failed
        self._abandoned: list[Any] = []
        self.server: ServerInfo | None = None
        _pools.add(self)

    # -- lifecycle -------------------------------------------------------------

    def _pool(self) -> PooledDB:
        db = self._db
        if db is None:
            with self._lock:
                if self._db is None:
                    self._db = PooledDB(
                        creator=self._creator, mincached=0, maxcached=self.size, maxconnections=self.size,
                        blocking=True, ping=self._creator.check, reset=False, failures=_NeverRaised,
                    )
                db = self._db
        return db

    def _after_fork(self) -> None:
        if self._db is not None:
            # Keep them referenced so no finalizer ever closes a socket the parent still uses.
            self._abandoned += [self._db, self._warm]
        self._db = None
        self._warm = []
        self._lock = threading.Lock()
        self._slots = _Slots(self.size)

    def close(self) -> None:
        """Close every idle connection. Connections in use are closed when they come back."""
        with self._lock:
            db, self._db = self._db, None
            warm, self._warm = self._warm, []
        for pooled, _ in warm:
            pooled.close()  # back to DBUtils' idle cache, which db.close() empties
        if db is not None:
            db.close()

    # -- checkout --------------------------------------------------------------

    def connection(self) -> _Checkout:
        """Hold one physical connection for a `with` block (raw MySQLdb connection, autocommit on).

        Driver errors raised in the block come out as MqliteErrors.
        """
        return _Checkout(self)

    def _checkout(self) -> tuple[Any, Any, list[tuple[Any, Any]]]:
        """(DBUtils' pooled connection, the raw connection inside it, the list it goes back to),
        checked out and alive.

        Connections that went back cleanly wait in `_warm`, still checked out of DBUtils: taking
        one is a list pop, where DBUtils' checkout and return take a Condition twice and cost
        more client CPU than the rest of a push. This never opens more than `size` connections:
        a new one is asked of DBUtils only when `_warm` is empty, and then every existing
        connection is held by another thread holding a slot (a connection goes back to `_warm`
        before its slot is freed).
        """
        warm = self._warm
        try:
            pooled, raw = warm.pop()
        except IndexError:
            try:
                pooled = self._pool().dedicated_connection()
            except MySQLdb.Error as exc:
                raise self._connect_error(exc) from exc
            raw = pooled.dbapi_connection
        if not (raw.open and (not self._suspect_since or self._alive(raw))):
            pooled, raw = self._renew(pooled)
        if self.server is None:
            self._probe(raw)
        return pooled, raw, warm

    def _renew(self, pooled: Any) -> tuple[Any, Any]:
        """Trade a pooled connection whose raw connection is closed for one that is open.

        The new connection is opened here, outside DBUtils' lock (a server that does not answer
        must not stall every other checkout behind one connect_timeout), and its errors come
        out as they are. DBUtils then puts it in place of the closed one: see `_Creator`.
        """
        try:
            fresh = self._connector()
        except BaseException as exc:
            pooled.close()
            if isinstance(exc, MySQLdb.Error):
                raise self._connect_error(exc) from exc
            raise
        pooled.close()  # into DBUtils' idle cache, where its check finds it closed
        self._creator.hand_over(fresh)
        try:
            pooled = self._pool().dedicated_connection()
        finally:
            unused = self._creator.take_back()
        if unused is not None:
            unused.close()  # DBUtils had an open idle connection to give instead
        raw = pooled.dbapi_connection
        if not raw.open:  # cannot happen with the DBUtils this was written for; never hand out a closed one
            pooled.close()
            raise Unavailable(f"the connection pool for {self.settings.where} gave out a closed connection "
                              f"(DBUtils {getattr(dbutils, '__version__', '?')}; mqlite needs {DBUTILS_NEEDED})")
        return pooled, raw

    def open_session(self, *, read_committed: bool = True) -> Any:
        """A dedicated connection outside the pool (the caller closes it). Raises Unavailable."""
        try:
            raw = self._connector(init_command=sql.READ_COMMITTED) if read_committed else self._connector()
        except MySQLdb.Error as exc:
            raise self._connect_error(exc) from exc
        if self.server is None:
            self._probe(raw)
        return raw

    def _alive(self, raw: Any) -> bool:
        if not raw.open:
            return False
        if getattr(raw, "_mqlite_checked", 0.0) < self._suspect_since:
            try:
                raw.ping()
            except MySQLdb.Error:
                raw.close()
                return False
            raw._mqlite_checked = time.monotonic()
        return True

    def _after_error(self, raw: Any, err: MqliteError | None) -> None:
        if isinstance(err, Unavailable) or (isinstance(err, DatabaseError) and err.code in CONNECTION_LOST):
            self._discard(raw)
            return
        # The block may have left a transaction open (or the protocol mid-result): make it clean or drop it.
        try:
            raw.rollback()
        except Exception:
            self._discard(raw)

    def _discard(self, raw: Any) -> None:
        self._suspect_since = time.monotonic()
        self._connector.lost(getattr(raw, "_mqlite_host", None))
        try:
            raw.close()
        except Exception:
            pass

    def _probe(self, raw: Any) -> None:
        cur = raw.cursor()
        cur.execute(sql.SERVER_INFO)
        packet, increment, version, _ = cur.fetchone()
        cur.close()
        self.server = ServerInfo(int(packet), int(increment), str(version))

    # -- errors ----------------------------------------------------------------

    @contextmanager
    def translating(self) -> Iterator[None]:
        """Re-raise driver exceptions from the block as MqliteErrors."""
        try:
            yield
        except MySQLdb.Error as exc:
            raise self.translate(exc) from exc

    def translate(self, exc: BaseException) -> MqliteError:
        """Turn a driver exception into an MqliteError; never includes the password."""
        return translate(exc, self.settings)

    def _connect_error(self, exc: MySQLdb.Error) -> MqliteError:
        """The MqliteError for a connection that could not be opened."""
        err: MqliteError = self._connector.refused_for_want_of_tls(exc) or self.translate(exc)
        if err.transient and self.server is None and self.first_connect_retry_for is not None:
            now = time.monotonic()
            if self._first_failure is None:
                self._first_failure = now
            waited = now - self._first_failure
            if waited >= self.first_connect_retry_for:
                err = Unavailable(f"{err} (gave up after {waited:.1f}s: no connection to it has succeeded yet)")
                err.transient = False
        return err


class _Creator:
    """What DBUtils calls to open a connection: the one this thread opened for it, else a new one.

    DBUtils checks an idle connection with `check` (its `ping` option) when it hands it out, and
    reopens one found closed through this creator. `check` calls a closed connection dead only
    when this thread has a replacement ready (`Pool._renew`), so DBUtils never connects under
    its lock to replace one; otherwise it hands the closed one out and `Pool._checkout` renews it.
    """

    dbapi = MySQLdb  # what DBUtils asks of a connection creator
    threadsafety = MySQLdb.threadsafety

    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self._ready = threading.local()

    def __call__(self) -> Any:
        conn = getattr(self._ready, "conn", None)
        if conn is None:
            return self.connector()
        self._ready.conn = None
        return conn

    def check(self, raw: Any) -> bool:
        return bool(raw.open) or getattr(self._ready, "conn", None) is None

    def hand_over(self, conn: Any) -> None:
        self._ready.conn = conn

    def take_back(self) -> Any:
        conn = getattr(self._ready, "conn", None)
        self._ready.conn = None
        return conn


class _Slots:
    """A counting semaphore whose waits happen in C (`queue.SimpleQueue` of tokens).

    threading.Semaphore waits on a Python-level Condition; with dozens of threads sharing a
    smaller pool, its bookkeeping under the GIL costs more client CPU per push than the pool itself.
    """

    __slots__ = ("_tokens",)

    def __init__(self, size: int) -> None:
        self._tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(size):
            self._tokens.put(None)

    def acquire(self, timeout: float) -> bool:
        try:
            self._tokens.get(timeout=timeout)
        except queue.Empty:
            return False
        return True

    def release(self) -> None:
        self._tokens.put(None)


class _Checkout:
    """The `with pool.connection() as raw:` block: a class, not a generator, because every push
    pays for it (a generator-based context manager costs several microseconds more)."""

    __slots__ = ("pool", "pooled", "raw", "warm")

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def __enter__(self) -> Any:
        pool = self.pool
        if not pool._slots.acquire(timeout=pool.checkout_timeout):
            err = Unavailable(
                f"no free connection to {pool.settings.where} after {pool.checkout_timeout:g}s "
                f"(all {pool.size} in use; raise pool_size)"
            )
            err.transient = False  # checkout_timeout is the caller's bound on this wait: not retried past it
            raise err
        try:
            self.pooled, self.raw, self.warm = pool._checkout()
        except BaseException:
            pool._slots.release()
            raise
        return self.raw

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        pool = self.pool
        if kind is None:
            if self.warm is pool._warm:
                self.warm.append((self.pooled, self.raw))  # before the slot is freed: see Pool._checkout
            else:
                self.pooled.close()  # the pool was closed (or this process forked) meanwhile
            pool._slots.release()
            return
        try:
            if isinstance(exc, MySQLdb.Error):
                err = pool.translate(exc)
                pool._after_error(self.raw, err)
                raise err from exc
            pool._after_error(self.raw, None)
        finally:
            self.pooled.close()
            pool._slots.release()
