"""Looking at and tidying queues: depth and totals, peeking, failed messages, pausing, workers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from . import ending, recovery, registry, retry
from .base import _PURGE_SLICE, QueueCore
from .config import check_queue, delay_us
from .connector import session_cipher
from .message import Message


@dataclass(frozen=True)
class QueueStats:
    """Depth and totals of one queue. `processed`/`failed_total` count since `counted_since`."""

    queue: str
    ready: int
    delayed: int
    claimed: int
    failed: int
    processed: int
    failed_total: int
    oldest_ready: datetime | None
    oldest_age: float | None  # seconds the oldest ready message has been waiting (server clock)
    counted_since: datetime | None
    paused: bool = False
    cancelling: int = 0  # claimed messages `Queue.cancel` marked, their handlers not yet told


@dataclass(frozen=True)
class Stats:
    """Every queue in the table, whether recovery can see every session (PROCESS privilege), and
    the TLS cipher of the session that asked (None: not encrypted)."""

    queues: dict[str, QueueStats]
    sees_all_connections: bool
    tls_cipher: str | None = None


class Administering(QueueCore):
    def retry_failed(self, queue: str, ids: Iterable[int] | None = None) -> int:
        """Make failed messages of `queue` (all, or those in `ids`) ready again, attempts reset; returns how many."""
        name = check_queue(queue)
        if ids is None:
            return self._execute(self._sql.retry_failed, (name,))
        wanted = [int(i) for i in ids]
        if not wanted:
            return 0
        return self._execute(self._sql.in_list(self._sql.retry_failed_ids, len(wanted)), (name, *wanted))

    def purge_failed(self, queue: str, older_than: timedelta | float | None = None) -> int:
        """Delete failed messages of `queue` (those failed more than `older_than` ago); returns how many."""
        seconds = older_than.total_seconds() if isinstance(older_than, timedelta) else (older_than or 0.0)
        name = check_queue(queue)
        if self._recording(name) is not None:
            return self._purge_recorded(self._sql.purge_failed_ids, (name, delay_us(seconds, None)))
        return self._sliced(self._sql.purge_failed, (name, delay_us(seconds, None)))

    # -- inspecting ------------------------------------------------------------

    def peek(self, queue: str, limit: int = 10, *, failed: bool = False) -> list[Message]:
        """Messages of `queue` in delivery order (ready, then delayed; claimed ones included), or its
        failed messages with their last error. Nothing is claimed."""
        name = check_queue(queue)
        if not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise ValueError("limit must be an integer from 1 to 10000")
        statement = self._sql.peek_failed if failed else self._sql.peek
        return [Message.from_row(r) for r in self._fetch(statement, (name, limit))]

    def size(self, queue: str) -> int:
        """How many messages of `queue` are ready now."""
        return int(self._fetch(self._sql.size, (check_queue(queue),))[0][0])

    def stats(self) -> Stats:
        """Per-queue depth (ready, delayed, claimed, failed), totals, and age of the oldest ready message."""
        self._counters.flush()

        def attempt() -> Stats:
            with self._pool.connection() as conn:
                cur = conn.cursor()
                cur.execute(self._sql.stats)
                depth = {r[0]: r[1:] for r in cur.fetchall()}
                cur.execute(self._sql.counters, (self.table,))
                totals = {r[0]: r[1:] for r in cur.fetchall()}
                sees_all = recovery.sees_all_connections(cur)
                cipher = session_cipher(cur)
                cur.close()
            queues = {}
            for q in sorted(set(depth) | set(totals)):
                ready, delayed, claimed, failed, oldest, age, cancelling = depth.get(q, (0, 0, 0, 0, None, None, 0))
                processed, failed_total, since, paused = totals.get(q, (0, 0, None, 0))
                queues[q] = QueueStats(
                    q, int(ready or 0), int(delayed or 0), int(claimed or 0), int(failed or 0),
                    int(processed), int(failed_total), oldest, None if age is None else float(age), since,
                    bool(paused), int(cancelling or 0),
                )
            return Stats(queues, sees_all, cipher)

        return retry.call(self._policy, attempt)

    def pause(self, queue: str) -> None:
        """Stop handing out messages of `queue` (pop, claim, workers, in every process); pushes still land."""
        self._execute(self._sql.pause, (self.table, check_queue(queue)))

    def resume(self, queue: str) -> None:
        """Hand out messages of a paused queue again."""
        self._execute(self._sql.resume, (self.table, check_queue(queue)))

    def is_paused(self, queue: str) -> bool:
        """Whether `queue` is paused."""
        name = check_queue(queue)
        return bool(self._fetch(self._sql.is_paused, (self.table, name)))

    def in_progress(self, queue: str | None = None, limit: int = 100) -> list[Message]:
        """Claimed messages (of `queue`, or of every queue), oldest claim first, with their progress."""
        name = None if queue is None else check_queue(queue)
        return [Message.from_row(r) for r in self._fetch(self._sql.in_progress, (name, name, limit))]

    def workers(self) -> list[registry.WorkerInfo]:
        """The Worker / `mqlite consume` processes registered on this table."""
        workers: list[registry.WorkerInfo] = self._registry(registry.list_workers)
        return workers

    def reset_counters(self, queue: str | None = None) -> None:
        """Zero the processed/failed totals of `queue` (or of every queue)."""
        name = None if queue is None else check_queue(queue)
        self._counters.flush()
        self._execute(self._sql.reset_counts, (self.table, name, name))

    def purge(self, queue: str) -> int:
        """Delete every ready and delayed message of `queue`; returns how many. Claimed messages are
        left to finish; failed ones stay for `purge_failed`."""
        name = check_queue(queue)
        if self._recording(name) is not None:
            return self._purge_recorded(self._sql.purge_ids, (name,))
        return self._sliced(self._sql.purge, (name,))

    def _purge_recorded(self, select: str, params: tuple[object, ...]) -> int:
        """Purge in slices, each slice's rows recorded 'purged' in history in the same transaction."""

        def attempt() -> int:
            with self._pool.connection() as conn:
                cur = conn.cursor()
                try:
                    return ending.purge_slice(cur, self._sql, select, (*params, _PURGE_SLICE), self.table)
                finally:
                    cur.close()

        total = 0
        while True:
            n = retry.call(self._policy, attempt)
            total += n
            if n < _PURGE_SLICE:
                return total
