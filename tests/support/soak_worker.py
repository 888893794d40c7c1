"""One soak worker process: `python -m tests.support.soak_worker DSN`.

A `mqlite.Worker` with SOAK_THREADS threads on the soak queues. Its handler records each delivery
(the message's token and this pid) in the `handled` table on a connection of its own, then
returns (the claim acknowledges it). A message whose token ends in 0 fails its first attempt
(retried after the backoff). Prints "ready" once consuming; SIGTERM stops it cleanly.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import MySQLdb

import mqlite
from mqlite.config import parse_dsn
from mqlite.failure import Backoff

QUEUES = ["soak", "keyed"]
THREADS = 4
POOL_SIZE = 4  # the Queue's pool; with CLAIM_SESSIONS and the log connection, the connections a worker may hold
CLAIM_SESSIONS = 2


def main(dsn: str) -> None:
    logging.basicConfig(level=logging.WARNING, format=f"worker {os.getpid()}: %(message)s")
    q = mqlite.Queue(dsn, pool_size=POOL_SIZE, claim_sessions=CLAIM_SESSIONS, recover_every=1.0,
                     max_attempts=1000, backoff=Backoff(base=0.2, cap=2.0))
    log = _Log(dsn)

    def handle(m: mqlite.Message) -> None:
        token = m.text()
        if token.endswith("0") and m.attempts == 0:
            raise RuntimeError("a first attempt that fails")
        log.record(token, m.id)
        time.sleep(0.002)  # the work

    worker = mqlite.Worker(q, QUEUES, handle, concurrency=THREADS, idle_max=0.2, lease=30)
    print("ready", flush=True)
    worker.run()
    q.close()


class _Log:
    """The `handled` table, written on connections of this process (one per thread)."""

    def __init__(self, dsn: str) -> None:
        import threading

        self.kwargs = {**parse_dsn(dsn).connect_kwargs(), "autocommit": True, "connect_timeout": 5}
        self.local = threading.local()

    def record(self, token: str, message_id: int) -> None:
        for _ in range(120):  # through a server restart
            conn = getattr(self.local, "conn", None)
            try:
                if conn is None:
                    conn = self.local.conn = MySQLdb.connect(**self.kwargs)
                conn.cursor().execute("INSERT INTO handled (token, msg_id, pid) VALUES (%s, %s, %s)",
                                      (token, message_id, os.getpid()))
                return
            except MySQLdb.Error:
                self.local.conn = None
                time.sleep(0.25)
        raise RuntimeError("cannot record a delivery for 30 s")


if __name__ == "__main__":
    main(sys.argv[1])
