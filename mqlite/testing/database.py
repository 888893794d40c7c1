"""A database of its own on a server, created for one test (or one benchmark run) and dropped after it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..config import check_table, parse_dsn


def admin_connection(dsn: str) -> Any:
    """A plain autocommit driver connection to `dsn`, for setting up and checking a database."""
    import MySQLdb

    kwargs = parse_dsn(dsn).connect_kwargs()
    return MySQLdb.connect(autocommit=True, charset="utf8mb4", collation="utf8mb4_bin", **kwargs)


@contextmanager
def scratch_database(server_dsn: str, name: str | None = None, *, prefix: str = "mqlite_t_") -> Iterator[str]:
    """Create a database on the server of `server_dsn` (named `name`, else `prefix` and a random
    suffix), yield a DSN naming it (same user, hosts and options), drop it on exit.

    A given `name` is dropped first if it exists: a run killed before its cleanup leaves it behind."""
    database = check_table(name if name is not None else f"{prefix}{uuid.uuid4().hex[:12]}")
    conn = admin_connection(server_dsn)
    try:
        if name is not None:
            conn.cursor().execute(f"DROP DATABASE IF EXISTS `{database}`")
        conn.cursor().execute(f"CREATE DATABASE `{database}`")
    finally:
        conn.close()
    try:
        yield parse_dsn(server_dsn).with_database(database).url()
    finally:
        # A connection of its own: the block may have outlived an idle one (or restarted the server).
        conn = admin_connection(server_dsn)
        try:
            conn.cursor().execute(f"DROP DATABASE IF EXISTS `{database}`")
        finally:
            conn.close()
