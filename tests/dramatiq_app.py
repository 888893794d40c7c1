"""The Dramatiq actors of the broker tests: the `dramatiq` worker imports this module.

The broker DSN comes from `MQLITE_TEST_BROKER`. Actors write to the `done` table of the same
database (the side channel the tests count; see tests/celery_app.py for its columns).
"""

from __future__ import annotations

import os
import time

import dramatiq

from mqlite.contrib.dramatiq import MqliteBroker

from .celery_app import side_channel

DSN = os.environ.get("MQLITE_TEST_BROKER", "")
broker = MqliteBroker(DSN or None, pool_size=16)
dramatiq.set_broker(broker)


def note(k: int, queue: str, sent: float | None = None) -> None:
    side_channel(DSN).cursor().execute(
        "INSERT INTO done (k, queue, pid, sent, ran, redelivered) VALUES (%s, %s, %s, %s, %s, 0)",
        (k, queue, os.getpid(), sent, time.time()),
    )


@dramatiq.actor(queue_name="dq_default", max_retries=0)
def record(k: int, sent: float | None = None) -> None:
    note(k, "dq_default", sent)


@dramatiq.actor(queue_name="dq_failing", max_retries=0)
def explode(k: int) -> None:
    raise ValueError(f"boom {k}")


@dramatiq.actor(queue_name="dq_flaky", max_retries=3, min_backoff=200, max_backoff=400)
def flaky(k: int) -> None:
    """Fails on its first run, succeeds on the retry (which waits in mqlite as a delayed message)."""
    cur = side_channel(DSN).cursor()
    cur.execute("SELECT COUNT(*) FROM done WHERE k = %s AND queue = 'dq_flaky_try'", (k,))
    first = cur.fetchone()[0] == 0
    note(k, "dq_flaky_try")
    if first:
        raise RuntimeError(f"first try of {k}")
    note(k, "dq_flaky")
