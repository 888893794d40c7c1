"""The pool over DBUtils: what it relies on in DBUtils' public API, and how it replaces dead connections."""

from __future__ import annotations

import threading

import dbutils
import MySQLdb
import pytest
from dbutils.pooled_db import PooledDB
from dbutils.steady_db import SteadyDBConnection

import mqlite
from mqlite.config import parse_dsn
from mqlite.errors import ConfigError, Unavailable
from mqlite.pool import DBUTILS_NEEDED, Pool, dbutils_problem

from .conftest import admin_connection, rows

RELIED_ON = f"mqlite's pool relies on this (mqlite/pool.py, _Creator); it needs {DBUTILS_NEEDED}"


def test_dbutils_offers_what_the_pool_relies_on(dsn: str) -> None:
    """DBUtils' documented behaviour the pool is built on, checked against DBUtils itself."""
    assert dbutils_problem() is None, dbutils_problem()
    opened: list[MySQLdb.Connection] = []
    checked: list[MySQLdb.Connection] = []

    def creator() -> MySQLdb.Connection:
        opened.append(admin_connection(dsn))
        return opened[-1]

    creator.dbapi = MySQLdb  # type: ignore[attr-defined]
    creator.threadsafety = MySQLdb.threadsafety  # type: ignore[attr-defined]

    def check(raw: MySQLdb.Connection) -> bool:
        checked.append(raw)
        return bool(raw.open)

    db = PooledDB(creator=creator, maxcached=2, maxconnections=2, blocking=True, ping=check, reset=False)
    try:
        pooled = db.dedicated_connection()
        raw = pooled.dbapi_connection
        assert raw is opened[0], f"dbapi_connection is not the connection the creator made: {RELIED_ON}"
        pooled.close()
        pooled = db.dedicated_connection()
        assert checked == [raw], f"the ping callable was not given the raw connection on checkout: {RELIED_ON}"
        assert pooled.dbapi_connection is raw, f"an idle connection that passed the check was not reused: {RELIED_ON}"
        raw.close()
        pooled.close()
        pooled = db.dedicated_connection()
        assert len(opened) == 2, f"a connection the check called dead was not reopened through the creator: {RELIED_ON}"
        assert pooled.dbapi_connection is opened[1] and opened[1].open, RELIED_ON
        pooled.close()
    finally:
        db.close()
    assert not opened[1].open, f"PooledDB.close() left an idle connection open: {RELIED_ON}"


def test_a_dbutils_without_the_public_api_is_a_clear_config_error(dsn: str, monkeypatch) -> None:
    monkeypatch.delattr(SteadyDBConnection, "dbapi_connection")
    with pytest.raises(ConfigError, match=r"DBUtils .* has no SteadyDBConnection\.dbapi_connection.*DBUtils>=3\.2,<4"):
        Pool(parse_dsn(dsn))
    with pytest.raises(ConfigError, match="DBUtils>=3.2,<4"):
        mqlite.Queue(dsn).push("q", "never sent")


def test_a_dbutils_of_another_major_version_is_refused(dsn: str, monkeypatch) -> None:
    monkeypatch.setattr(dbutils, "__version__", "4.0.0")
    with pytest.raises(ConfigError, match=r"DBUtils 4\.0\.0 .*DBUtils>=3\.2,<4"):
        Pool(parse_dsn(dsn))


def _sessions(admin: MySQLdb.Connection) -> set[int]:
    return {int(i) for (i,) in rows(admin, "SELECT ID FROM information_schema.PROCESSLIST "
                                          "WHERE DB = DATABASE() AND ID <> CONNECTION_ID()")}


def test_killed_connections_are_replaced_in_place_and_the_pool_does_not_grow(dsn: str, admin) -> None:
    q = mqlite.Queue(dsn, pool_size=2)
    q.apply_schema()
    try:
        # Two threads at once, so that the pool holds two connections.
        barrier = threading.Barrier(2, timeout=30)

        def hold() -> None:
            with q._pool.connection():
                barrier.wait()

        threads = [threading.Thread(target=hold) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        before = _sessions(admin)
        assert len(before) == 2
        for session in before:
            admin.cursor().execute("KILL %s", (session,))
        for i in range(20):  # every checkout finds a dead connection at first; each push still lands
            q.push("killed", str(i))
        after = _sessions(admin)
        assert not after & before
        assert 1 <= len(after) <= 2
        assert q.size("killed") == 20
        with q._pool.connection() as raw:
            assert isinstance(raw, MySQLdb.connections.Connection) and raw.thread_id() in after
    finally:
        q.close()


def test_a_dead_connection_that_cannot_be_reopened_is_unavailable_and_given_back(dsn: str, admin) -> None:
    q = mqlite.Queue(dsn, pool_size=1, retry_for=0)
    q.apply_schema()
    try:
        q.push("p", "first")
        (session,) = _sessions(admin)
        admin.cursor().execute("KILL %s", (session,))
        pool = q._pool
        with pytest.raises(Unavailable, match="lost connection"):
            with pool.connection() as raw:
                raw.cursor().execute("SELECT 1")
        good = pool._connector.kwargs
        pool._connector.kwargs = {**good, "port": _free_port()}  # nothing listens there
        with pytest.raises(Unavailable, match="cannot connect"):
            with pool.connection():
                pass
        pool._connector.kwargs = good
        q.push("p", "second")  # the one connection went back to DBUtils: not lost from the pool's count
        assert q.size("p") == 2
    finally:
        q.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
