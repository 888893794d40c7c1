"""The Celery app of the broker tests: built by the tests to send, imported by `celery worker` to run.

The worker reads its configuration from the environment (`MQLITE_TEST_BROKER`, the broker DSN;
`MQLITE_TEST_ACKS_LATE=1`; `MQLITE_TEST_PUTLOCKS=0`; `MQLITE_TEST_BACKEND`, a result backend URL).
Every task but `t.add` writes one row to the `done` table of the same database: the side channel
the tests count, so a task that ran twice shows up twice.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import MySQLdb
from celery import Celery

from mqlite.config import parse_dsn

SIDE_TABLE = (
    "CREATE TABLE IF NOT EXISTS done (k INT NOT NULL, queue VARCHAR(64) NOT NULL, pid INT NOT NULL, "
    "sent DOUBLE NULL, ran DOUBLE NOT NULL, redelivered TINYINT NOT NULL)"
)

_side: dict[tuple[int, int], Any] = {}


def side_channel(dsn: str) -> Any:
    """One connection per process and thread (a forked pool child opens its own)."""
    key = (os.getpid(), threading.get_ident())
    conn = _side.get(key)
    if conn is None:
        conn = _side[key] = MySQLdb.connect(autocommit=True, **parse_dsn(dsn).connect_kwargs())
    return conn


def make_app(dsn: str, *, acks_late: bool = False, backend: str | None = None, **options: Any) -> Celery:
    app = Celery("mqlite_test", broker=dsn, broker_transport="mqlite.contrib.kombu:Transport", backend=backend)
    app.conf.update(
        task_acks_late=acks_late,
        task_routes={"t.report": {"queue": "reports"}},
        broker_transport_options={"polling_interval": 0.5, **options},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        # A polling transport runs Celery's sync loop, which with putlocks blocks on a full pool
        # before it reads the next message, remote control included (tests/test_celery_control.py).
        worker_pool_putlocks=os.environ.get("MQLITE_TEST_PUTLOCKS", "1") == "1",
    )

    def note(task: Any, k: int, sleep: float, sent: float | None) -> None:
        if sleep:
            time.sleep(sleep)
        info = task.request.delivery_info or {}
        side_channel(dsn).cursor().execute(
            "INSERT INTO done (k, queue, pid, sent, ran, redelivered) VALUES (%s, %s, %s, %s, %s, %s)",
            (k, info.get("routing_key") or "", os.getpid(), sent, time.time(), int(bool(info.get("redelivered")))),
        )

    @app.task(name="t.record", bind=True, shared=False)
    def record(self: Any, k: int, sleep: float = 0.0, sent: float | None = None) -> None:
        note(self, k, sleep, sent)

    @app.task(name="t.report", bind=True, shared=False)
    def report(self: Any, k: int, sleep: float = 0.0, sent: float | None = None) -> None:
        note(self, k, sleep, sent)

    @app.task(name="t.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    return app


if os.environ.get("MQLITE_TEST_BROKER"):
    app = make_app(os.environ["MQLITE_TEST_BROKER"], acks_late=os.environ.get("MQLITE_TEST_ACKS_LATE") == "1",
                   backend=os.environ.get("MQLITE_TEST_BACKEND") or None)
