"""`Queue`: the public verbs over one messages table, put together from the parts that do them."""

from __future__ import annotations

import threading
from typing import Literal

from . import retry, schema
from .admin import Administering, QueueStats, Stats
from .coalesce import Coalescer
from .config import DEFAULT_TABLE, check_count, parse_dsn, resolve_dsn
from .consume import Consuming
from .counters import Counters
from .ending import HistorySettings
from .failure import Backoff
from .history import HistoryEntry, Recording
from .pool import Pool
from .produce import Producing
from .schedule import Schedule, Scheduling
from .sessions import ClaimSessions
from .settle import ACK_GROUP
from .sql import statements
from .wake import Doorbell

__all__ = ["HistoryEntry", "Queue", "QueueStats", "Schedule", "Stats", "default_queue"]


class Queue(Producing, Consuming, Administering, Recording, Scheduling):
    """A handle on one messages table. Thread-safe; one per process is the intended use.

    `dsn=None` reads `MQLITE_DSN`. Connections are pooled (at most `pool_size`), opened lazily,
    and time out after `connect_timeout` seconds; a call waits at most `checkout_timeout` seconds
    for a free one, then raises Unavailable (size the pool to the threads that share it).
    Transient errors are retried for up to `retry_for` seconds (0 disables). A message whose
    handler fails is retried after `backoff` and becomes failed after `max_attempts`. Consumers
    run recovery themselves, at most every `recover_every` seconds (0 disables) when they find a
    queue empty, and every `6 * recover_every` seconds otherwise. A DSN may list several hosts
    (`mysql://u:p@h1:3306,h2:3306/db`): `routing="single"` sends everything to the first that
    answers and moves to the next when it dies; `"spread"` spreads connections over all of them
    (default: the DSN's `?routing=`, else single). Claims run on at most `claim_sessions`
    dedicated connections besides the pool, shared by every queue name; one idle for a few
    seconds and owning nothing is closed. `first_connect_retry_for` bounds the retries of a
    refused *first* connection (None: `retry_for`), for commands a person waits on.
    Idle consumers of this Queue wait on `doorbell` (mqlite/wake.py): a push from any process
    wakes them within milliseconds; a lost wake-up is made up by a look every `wake_bound`
    seconds at most. `wake=False`: pushes ring no consumer (they find messages by polling).
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        table: str = DEFAULT_TABLE,
        pool_size: int = 10,
        connect_timeout: float = 5.0,
        checkout_timeout: float = 10.0,
        retry_for: float = 10.0,
        max_attempts: int = 5,
        backoff: Backoff = Backoff(),
        recover_every: float = 5.0,
        routing: Literal["single", "spread"] | None = None,
        claim_sessions: int = 8,
        first_connect_retry_for: float | None = None,
        wake: bool = True,
        wake_bound: float = 1.0,
    ) -> None:
        self.settings = parse_dsn(resolve_dsn(dsn))
        self._sql = statements(table)
        self.table = table
        self.max_attempts = check_count(max_attempts)
        self.backoff = backoff
        self.recover_every = recover_every
        self._pool = Pool(
            self.settings, size=pool_size, connect_timeout=connect_timeout, checkout_timeout=checkout_timeout,
            routing=routing or self.settings.routing, first_connect_retry_for=first_connect_retry_for,
        )
        self._policy = retry.transient_policy(retry_for) if retry_for > 0 else None
        self._sessions = ClaimSessions(
            lambda: self._pool.open_session(), self._pool.translating, self._sql, limit=claim_sessions,
            wait_timeout=checkout_timeout,
        )
        self.doorbell = Doorbell(self._pool, self._sql, table, bound=wake_bound, ring=wake)
        self._claimers = {}
        self._levels = {}
        self._claimers_lock = threading.Lock()
        self._counters = Counters(self._flush_counts)
        # Acknowledgements from many threads share one DELETE (and one commit).
        # Every acknowledgement of the process, one at a time or a batch, joins one DELETE in flight.
        self._acks = Coalescer(self._delete_ack_groups, limit=ACK_GROUP, size=len, keep_interrupted=True)
        self._last_recover = float("-inf")  # a fresh consumer recovers orphans the first time it finds nothing
        self._recover_lock = threading.Lock()
        self._history = HistorySettings(self._read_history_settings)

    def __repr__(self) -> str:
        return f"Queue({self.settings.redacted()!r}, table={self.table!r})"

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release messages claimed but not handed out, flush counters, close all connections.

        Messages still inside a `claim` block become orphans and come back by recovery.
        The Queue reopens connections if used again.
        """
        self.doorbell.close()
        self._close_claimers()
        self._counters.flush()
        self._pool.close()

    def ring(self, queue: str) -> None:
        """Wake the idle consumers of `queue` now: after committing pushes made with `connection=`
        (those ring nobody: they are not visible before the commit). Never raises."""
        self.doorbell.ring(queue)

    # -- schema ----------------------------------------------------------------

    def apply_schema(self) -> list[schema.Migration]:
        """Create or upgrade the messages table; returns the migrations applied (empty: up to date)."""
        with self._pool.connection() as conn:
            return schema.apply(conn, self.table)

    def schema_status(self) -> schema.SchemaStatus:
        """Applied and pending schema versions of the messages table."""
        with self._pool.connection() as conn:
            return schema.status(conn, self.table)


_default: Queue | None = None
_default_lock = threading.Lock()


def default_queue() -> Queue:
    """The process-wide Queue built from `MQLITE_DSN`, created on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Queue()
    return _default
