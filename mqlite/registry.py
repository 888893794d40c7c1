"""The live worker registry: who is consuming, from where, doing what (table `mqlite_workers`).

A Worker registers once, heartbeats every few seconds (one UPDATE, never one per message) and
unregisters on a clean stop. Any heartbeat also prunes rows whose heartbeat stopped long ago:
their processes are gone, and their claims come back by the usual recovery rules.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .sql import Statements


@dataclass(frozen=True)
class WorkerInfo:
    """One registered worker process."""

    id: int
    host: str
    pid: int
    queues: list[str]
    started_at: datetime
    heartbeat_at: datetime
    current_messages: list[int]
    processed: int
    failed: int
    silent_for: float  # seconds since its last heartbeat (server clock)


def register(cur: Any, st: Statements, queues: list[str]) -> int:
    import socket  # on use: only a worker registering itself needs it, not `import mqlite`

    cur.execute(st.register_worker, (st.table, socket.gethostname()[:255], os.getpid(), ",".join(queues)))
    return int(cur.lastrowid)


def heartbeat(cur: Any, st: Statements, worker_id: int, current: list[int], processed: int, failed: int,
              prune_after: float) -> None:
    # Ids of the messages in hand; a worker with hundreds of threads shows the first ones.
    listed = ",".join(map(str, current))[:1024] or None
    cur.execute(st.heartbeat_worker, (listed, processed, failed, worker_id))
    cur.execute(st.prune_workers, (st.table, int(prune_after * 1e6)))


def unregister(cur: Any, st: Statements, worker_id: int) -> None:
    cur.execute(st.unregister_worker, (worker_id,))


def list_workers(cur: Any, st: Statements) -> list[WorkerInfo]:
    cur.execute(st.list_workers, (st.table,))
    return [
        WorkerInfo(
            int(id_), host, int(pid), [q for q in queues.split(",") if q], started, beat,
            [int(x) for x in (current or "").split(",") if x], int(processed), int(failed), float(silent),
        )
        for id_, host, pid, queues, started, beat, current, processed, failed, silent in cur.fetchall()
    ]
