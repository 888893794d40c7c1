"""The caller's connection: what kind it is, and a DB-API cursor on it inside the caller's transaction.

`push(..., connection=c)` and `ack(..., connection=c)` run their statements on `c` and never
commit, roll back or change autocommit there: the caller owns the transaction. `c` may be a
DB-API connection of mysqlclient (`MySQLdb`) or PyMySQL, a SQLAlchemy 2.x `Connection`,
`Session` or `scoped_session`, or a Django connection (`django.db.connection`,
`connections[alias]`). No framework is imported here until an object of that framework is given.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from .config import Settings
from .connector import translate
from .errors import MqliteError, Unavailable

log = logging.getLogger("mqlite")

SUPPORTED = (
    "a DB-API connection of MySQLdb (mysqlclient) or PyMySQL, a SQLAlchemy Connection or Session, "
    "or a Django connection"
)

Hook = Callable[[], None]


class Borrowed:
    """A caller's connection seen as its DB-API connection.

    `raw`: the driver's connection (statements go through `raw.cursor()`); `driver`: its module
    (`MySQLdb` or `pymysql`), whose `Error` classes the caller's statements may raise.
    `after_commit(fn)` runs `fn` once the caller's transaction has committed, where the framework
    says when that is (Django, SQLAlchemy Session); it returns False where nobody can tell.
    """

    __slots__ = ("raw", "driver", "_after_commit")

    def __init__(self, raw: Any, driver: Any, after_commit: Callable[[Hook], None] | None = None) -> None:
        self.raw = raw
        self.driver = driver
        self._after_commit = after_commit

    def autocommit(self) -> bool:
        """True when the connection commits every statement by itself (no transaction of the caller's)."""
        return bool(self.raw.get_autocommit())

    def after_commit(self, fn: Hook) -> bool:
        if self._after_commit is None:
            return False
        self._after_commit(fn)
        return True

    def translate(self, exc: BaseException, settings: Settings | None) -> MqliteError:
        """The MqliteError for a driver error raised by a statement on this connection."""
        if isinstance(exc, self.driver.InterfaceError):  # PyMySQL's "connection closed" has no code
            return Unavailable(f"the connection given is closed or unusable ({exc.args[0] if exc.args else ''})")
        return translate(exc, settings)  # MySQL's error codes, the same from both drivers


def driver_of(conn: Any) -> Any:
    """The driver module (MySQLdb or pymysql) when `conn` is a raw DB-API connection of one, else None.

    The cheap test a plain push makes before anything else (it runs inside the caller's transaction).
    """
    family = _families.get(type(conn))
    if family is None:
        family = _families[type(conn)] = _family(type(conn))
    return _driver_modules.get(family)


def borrow(conn: Any) -> Borrowed:
    """The DB-API connection under `conn`, inside the transaction it has open (or begins, as
    SQLAlchemy would on a first statement). TypeError for anything else."""
    driver = driver_of(conn)
    if driver is not None:
        return Borrowed(conn, driver)
    family = _families[type(conn)]
    if family == "sqlalchemy":
        return _from_sqlalchemy(conn)
    if family == "django":
        return _from_django(conn)
    kind = type(conn)
    raise TypeError(f"connection= must be {SUPPORTED}; got {kind.__module__}.{kind.__qualname__}")


_DRIVERS = ("MySQLdb", "pymysql")
_families: dict[type, str] = {}  # connection class -> "MySQLdb", "pymysql", "sqlalchemy", "django" or ""
_driver_modules: dict[str, Any] = {}  # family -> driver module, once a connection of it was seen


def _family(kind: type) -> str:
    """Which library a connection class comes from, by its own or a base class's module (duck
    typing: nothing is imported to tell). A driver counts only for its Connection class."""
    for cls in kind.__mro__:
        module = cls.__module__
        top = module.partition(".")[0]
        if top in _DRIVERS:
            if module == f"{top}.connections" and cls.__name__ == "Connection":
                _driver_modules[top] = sys.modules[top]  # imported: it made this connection
                return top
        elif top in ("sqlalchemy", "django"):
            return top
    return ""


def _from_sqlalchemy(conn: Any) -> Borrowed:
    from sqlalchemy import event
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session, scoped_session

    after_commit: Callable[[Hook], None] | None = None
    if isinstance(conn, scoped_session):
        conn = conn()
    if isinstance(conn, Session):
        session = conn
        conn = session.connection()  # begins the session's transaction if none is open (its autobegin)
        after_commit = lambda fn: _session_after_commit(session, fn, event)  # noqa: E731
    if not isinstance(conn, Connection):
        raise TypeError(f"connection= must be {SUPPORTED}; got SQLAlchemy {type(conn).__qualname__}")
    if not conn.in_transaction():
        # What SQLAlchemy's autobegin does on a first execute(): the caller's commit() ends it.
        conn.begin()
    raw = conn.connection.dbapi_connection
    driver = driver_of(raw)
    if driver is None:
        raise TypeError(
            f"connection= is a SQLAlchemy connection over {type(raw).__module__}; "
            "mqlite speaks mysql+mysqldb:// and mysql+pymysql://"
        )
    return Borrowed(raw, driver, after_commit)


_SESSION_HOOKS = "mqlite_after_commit"


def _session_after_commit(session: Any, fn: Hook, event: Any) -> None:
    """Run `fn` after the session's transaction commits; forget it if it rolls back."""
    hooks: list[Hook] | None = session.info.get(_SESSION_HOOKS)
    if hooks is None:
        hooks = session.info[_SESSION_HOOKS] = []

        def committed(s: Any) -> None:
            pending: list[Hook] = list(hooks)
            hooks.clear()
            for hook in pending:
                _run_hook(hook)

        def rolled_back(s: Any) -> None:
            hooks.clear()

        event.listen(session, "after_commit", committed)
        event.listen(session, "after_rollback", rolled_back)
    hooks.append(fn)


def _from_django(conn: Any) -> Borrowed:
    from django.db import connections
    from django.db.backends.base.base import BaseDatabaseWrapper

    # django.db.connection is a proxy to the current thread's connection of the default alias.
    wrapper = conn if isinstance(conn, BaseDatabaseWrapper) else connections[conn.alias]
    if wrapper.vendor != "mysql":
        raise TypeError(f"connection= is a Django {wrapper.vendor} connection; mqlite needs the mysql backend")
    # What Django checks before any query: the connection belongs to this thread, and the
    # transaction is not one that an earlier error inside atomic() has doomed to roll back.
    wrapper.validate_thread_sharing()
    wrapper.validate_no_broken_transaction()
    wrapper.ensure_connection()
    return Borrowed(wrapper.connection, sys.modules["MySQLdb"], lambda fn: wrapper.on_commit(lambda: _run_hook(fn)))


def _run_hook(fn: Hook) -> None:
    # The caller's commit has happened: a failing hook (promotion) must not look like a failed commit.
    try:
        fn()
    except Exception as exc:
        log.warning("after-commit step failed (consumers' housekeeping will do it): %s", exc)
