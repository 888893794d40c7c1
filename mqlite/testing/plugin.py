"""The pytest plugin (registered as `mqlite` through the `pytest11` entry point): real-server fixtures.

- `mqlite_server_dsn` (session): the server of `MQLITE_DSN` when set, else a throwaway server
  started once for the session and removed at its end;
- `mqlite_dsn`: a database created on that server for one test, dropped after it;
- `mqlite_queue`: a `mqlite.Queue` on that database, schema applied, closed after the test;
- `mqlite_queue_options`: keyword arguments for that Queue (`{}`); override it to change them.

`pytest --mqlite-tls`: the throwaway server offers TLS, with certificates made for the session,
and every DSN the fixtures give asks for it (`ssl_mode=VERIFY_IDENTITY&ssl_ca=…`).

Disable with `pytest -p no:mqlite`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .database import scratch_database
from .server import ThrowawayServer

if TYPE_CHECKING:
    from ..queue import Queue


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--mqlite-tls", action="store_true", default=False,
        help="mqlite: start the throwaway server with TLS (certificates made for the session); "
             "the fixtures' DSNs verify it",
    )


@pytest.fixture(scope="session")
def mqlite_server_dsn(request: pytest.FixtureRequest) -> Iterator[str]:
    """DSN of the session's server: `MQLITE_DSN` when set, else a throwaway server's (root, no password)."""
    dsn = os.environ.get("MQLITE_DSN")
    if dsn:
        yield dsn
        return
    server = ThrowawayServer(tls=bool(request.config.getoption("--mqlite-tls")))
    server.start()
    try:
        yield server.dsn
    finally:
        server.stop()


@pytest.fixture
def mqlite_dsn(mqlite_server_dsn: str) -> Iterator[str]:
    """A DSN naming a database created for this test alone (dropped afterwards)."""
    with scratch_database(mqlite_server_dsn) as dsn:
        yield dsn


@pytest.fixture
def mqlite_queue_options() -> dict[str, Any]:
    """Keyword arguments for `mqlite_queue`'s Queue, e.g. `{"pool_size": 32}` in an override."""
    return {}


@pytest.fixture
def mqlite_queue(mqlite_dsn: str, mqlite_queue_options: dict[str, Any]) -> Iterator[Queue]:
    """A `mqlite.Queue` on the test's database with the schema applied; closed after the test."""
    from ..queue import Queue

    queue = Queue(mqlite_dsn, **mqlite_queue_options)
    try:
        queue.apply_schema()
        yield queue
    finally:
        queue.close()
