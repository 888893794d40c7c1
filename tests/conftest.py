"""Fixtures. The real-server ones come from mqlite's own pytest plugin (`mqlite.testing.plugin`, found
through its `pytest11` entry point), so the whole suite exercises it: one server per session
(MQLITE_DSN, else a throwaway one), a fresh database per test. For tests marked `cluster`: one
3-node Galera cluster per session and a fresh database on it per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import MySQLdb
import pytest

import mqlite
from mqlite.config import parse_dsn
from mqlite.testing import admin_connection
from mqlite.testing.galera import GaleraCluster, galera_missing

from .helpers import wait_for

__all__ = ["admin_connection", "rows"]


@pytest.fixture(scope="session")
def server_dsn(mqlite_server_dsn: str) -> str:
    """The session's server (MQLITE_DSN, else the plugin's throwaway server)."""
    return mqlite_server_dsn


@pytest.fixture
def dsn(mqlite_dsn: str) -> str:
    """A DSN naming a database created for this test alone (dropped afterwards)."""
    return mqlite_dsn


@pytest.fixture
def admin(dsn: str) -> Iterator[MySQLdb.Connection]:
    conn = admin_connection(dsn)
    yield conn
    conn.close()


@pytest.fixture
def mqlite_queue_options() -> dict[str, Any]:
    """The suite's Queues have room for the threads its concurrency tests start."""
    return {"pool_size": 32}


@pytest.fixture
def q(mqlite_queue: mqlite.Queue) -> mqlite.Queue:
    """A Queue on the test's database with the schema applied (closed after the test)."""
    return mqlite_queue


def rows(conn: MySQLdb.Connection, sql: str, *params: object) -> list[tuple]:
    cur = conn.cursor()
    cur.execute(sql, params or None)
    return list(cur.fetchall())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Cluster tests run last: the session's cluster then lives only while they run, not idle beside
    every other test on a small machine."""
    items.sort(key=lambda item: item.get_closest_marker("cluster") is not None)


@pytest.fixture(scope="session")
def galera() -> Iterator[GaleraCluster]:
    """One 3-node MariaDB Galera cluster for every cluster test of the session (forming takes ~15-30 s).

    A test that kills a node must bring it back (`galera.start_node(i)`) before it ends."""
    missing = galera_missing()
    if missing:
        pytest.skip(f"no Galera cluster here: {missing}")
    cluster = GaleraCluster(nodes=3)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster_dsns(galera: GaleraCluster) -> Iterator[list[str]]:
    """One DSN per node, all naming a database created for this test alone (dropped afterwards)."""
    galera.wait_synced(60)
    name = f"mqlite_t_{uuid.uuid4().hex[:12]}"
    dsns = [parse_dsn(dsn).with_database(name).url() for dsn in galera.dsns]
    first = admin_connection(galera.dsns[0])
    first.cursor().execute(f"CREATE DATABASE `{name}`")
    first.close()
    # DDL is replicated in total order, but applied on the other nodes after it returns here.
    for dsn in galera.dsns[1:]:
        conn = admin_connection(dsn)
        try:
            wait_for(lambda c=conn: rows(c, "SHOW DATABASES LIKE %s", name), timeout=30, what=f"{name} on {dsn}")
        finally:
            conn.close()
    try:
        yield dsns
    finally:
        # On a node that runs now (the test may have killed and restarted some).
        up = next(node for node in galera.nodes if node.running)
        conn = admin_connection(up.dsn)
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()
