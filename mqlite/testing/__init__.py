"""Testing with mqlite against a real server: throwaway servers, scratch databases, pytest fixtures.

    from mqlite.testing import dsn_or_throwaway
    with dsn_or_throwaway() as dsn:          # MQLITE_DSN, else a throwaway server for the block
        q = mqlite.Queue(dsn)

The pytest plugin (`mqlite.testing.plugin`, loaded through the `pytest11` entry point) provides the
fixtures `mqlite_server_dsn`, `mqlite_dsn`, `mqlite_queue` and `mqlite_queue_options`. Also here:
`mqlite.testing.galera` (a MariaDB Galera cluster on loopback), `mqlite.testing.web` (`mqlite web`
as a process) and `mqlite.testing.certs` (a CA and certificates for TLS; `ThrowawayServer(tls=True)`).
Nothing in the core imports this package, and it imports pytest only in the plugin.
"""

from __future__ import annotations

from typing import Any

from .database import admin_connection, scratch_database
from .server import ServerError, ThrowawayServer, dsn_or_throwaway, find_binary, free_port, throwaway_server

# The fixtures, for `from mqlite.testing import mqlite_queue`; looked up on use so that importing
# this package does not import pytest.
_FIXTURES = ("mqlite_server_dsn", "mqlite_dsn", "mqlite_queue", "mqlite_queue_options")

__all__ = [
    *_FIXTURES,
    "ServerError",
    "ThrowawayServer",
    "admin_connection",
    "dsn_or_throwaway",
    "find_binary",
    "free_port",
    "scratch_database",
    "throwaway_server",
]


def __getattr__(name: str) -> Any:
    if name in _FIXTURES:
        from . import plugin

        return getattr(plugin, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
