"""What every part of a Queue shares: pool, statements, retry policy, one-statement helpers, and the
promotion of messages parked behind a concurrency cap (pushes and settling both free slots).

`Queue` (queue.py) is put together from `Producing` (produce.py), `Consuming` (consume.py, over
`Settling` in settle.py) and `Administering` (admin.py); each reads the attributes declared here.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from . import retry
from .coalesce import Coalescer
from .config import Settings
from .counters import Counters
from .ending import HistorySettings, worker_label
from .failure import Backoff
from .message import Receipt
from .pool import Pool
from .sessions import ClaimSessions
from .sql import Statements
from .wake import Doorbell

if TYPE_CHECKING:
    from .retry import Policy

_PURGE_SLICE = 5000  # rows per DELETE when purging: a huge queue never becomes one huge transaction


class QueueCore:
    """The state a Queue holds (set by `Queue.__init__`) and the helpers its parts share."""

    settings: Settings
    table: str
    max_attempts: int
    backoff: Backoff
    recover_every: float
    doorbell: Doorbell
    _sql: Statements
    _pool: Pool
    _policy: Policy | None
    _claimers: dict[tuple[str, bool, float], Any]  # (queue, consume, lease) -> claimer.Claimer
    _claimers_lock: threading.Lock
    _sessions: ClaimSessions
    _counters: Counters
    _acks: Coalescer[Receipt, bool]
    _last_recover: float
    _recover_lock: threading.Lock
    _history: HistorySettings

    def _recording(self, queue: str) -> str | None:
        """The table name to record `queue`'s finished messages under, None when its history is off."""
        return self.table if self._history.on(queue) else None

    def _pop_history(self, queue: str) -> tuple[str, str] | None:
        return (self.table, worker_label()) if self._history.on(queue) else None

    def _flush_counts(self, counts: dict[str, list[int]]) -> None:
        def attempt() -> None:
            with self._pool.connection() as conn:
                cur = conn.cursor()
                for q, (processed, failed) in counts.items():
                    cur.execute(self._sql.add_counts, (self.table, q, processed, failed, processed, failed))
                cur.close()

        retry.call(self._policy, attempt)

    def _sliced(self, statement: str, params: tuple[Any, ...]) -> int:
        total = 0
        while True:
            n = self._execute(statement, (*params, _PURGE_SLICE))
            total += n
            if n < _PURGE_SLICE:
                return total

    def _fetch(self, statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        def attempt() -> list[tuple[Any, ...]]:
            with self._pool.connection() as conn:
                cur = conn.cursor()
                cur.execute(statement, params)
                rows = list(cur.fetchall())
                cur.close()
                return rows

        return retry.call(self._policy, attempt)

    def _execute(self, statement: str, params: tuple[Any, ...]) -> int:
        def attempt() -> int:
            with self._pool.connection() as conn:
                cur = conn.cursor()
                n = cur.execute(statement, params)
                cur.close()
                return int(n)

        return retry.call(self._policy, attempt)


    def _promote(self, key: str) -> int:
        """Let parked messages of `key` into the ready range while it has free slots; returns how many."""

        def attempt() -> int:
            with self._pool.connection() as conn:
                cur = conn.cursor()
                cur.execute("START TRANSACTION")
                cur.execute(self._sql.lock_key, (self.table, key))
                row = cur.fetchone()
                promoted = 0
                if row is not None:
                    cur.execute(self._sql.count_running, (key,))
                    free = int(row[0]) - int(cur.fetchone()[0])
                    if free > 0:
                        promoted = cur.execute(self._sql.promote, (key, free))
                conn.commit()
                cur.close()
                return int(promoted)

        return retry.call(self._policy, attempt)

    def _promote_due(self) -> int:
        """Promote for every key with parked messages now due (after delays, backoffs, recoveries)."""
        return sum(self._promote(key) for (key,) in self._fetch(self._sql.keys_due, ()))

    def _registry(self, step: Any, *args: Any) -> Any:
        """Run one registry step (register, heartbeat, unregister, list) with the usual retries."""

        def attempt() -> Any:
            with self._pool.connection() as conn:
                cur = conn.cursor()
                try:
                    return step(cur, self._sql, *args)
                finally:
                    cur.close()

        return retry.call(self._policy, attempt)
