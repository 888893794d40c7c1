"""Fixtures: one real server per test session (MQLITE_DSN, else a throwaway one), a fresh database per test;
for tests marked `cluster`, one 3-node Galera cluster per session and a fresh database on it per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import MySQLdb
import pytest

import mqlite
from mqlite.config import parse_dsn
from mqlite.server import GaleraCluster, ThrowawayServer, galera_missing

from .helpers import wait_for


@pytest.fixture(scope="session")
def server() -> Iterator[ThrowawayServer | None]:
    """The throwaway server when MQLITE_DSN is unset (None otherwise)."""
    if os.environ.get("MQLITE_DSN"):
        yield None
        return
    srv = ThrowawayServer()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def server_dsn(server: ThrowawayServer | None) -> str:
    return server.dsn if server is not None else os.environ["MQLITE_DSN"]


def admin_connection(dsn: str) -> MySQLdb.Connection:
    """A plain driver connection for setting up and checking what is in the database."""
    kwargs = parse_dsn(dsn).connect_kwargs()
    return MySQLdb.connect(autocommit=True, charset="utf8mb4", collation="utf8mb4_bin", **kwargs)


@pytest.fixture
def dsn(server_dsn: str) -> Iterator[str]:
    """A DSN naming a database created for this test alone (dropped afterwards)."""
    settings = parse_dsn(server_dsn)
    name = f"mqlite_t_{uuid.uuid4().hex[:12]}"
    conn = admin_connection(server_dsn)
    conn.cursor().execute(f"CREATE DATABASE `{name}`")
    try:
        yield settings.with_database(name).url()
    finally:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


@pytest.fixture
def admin(dsn: str) -> Iterator[MySQLdb.Connection]:
    conn = admin_connection(dsn)
    yield conn
    conn.close()


@pytest.fixture
def q(dsn: str) -> Iterator[mqlite.Queue]:
    """A Queue on the test's database with the schema applied."""
    queue = mqlite.Queue(dsn, pool_size=32)
    queue.apply_schema()
    yield queue
    queue.close()


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
            wait_for(lambda: rows(conn, "SHOW DATABASES LIKE %s", name), timeout=30, what=f"{name} on {dsn}")
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
