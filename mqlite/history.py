"""What became of finished messages: per-queue history (opt-in), its listing, replay and pruning,
and cancellation (`Queue.cancel`). The rows are written by the statements that end messages
(`ending`); here they are switched on, read, replayed and pruned."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Union

from . import ending, retry, sql
from .base import QueueCore
from .config import check_queue
from .errors import ConfigError, NotFound

log = logging.getLogger("mqlite")

OUTCOMES = ("acked", "popped", "failed", "cancelled", "cancelled_late", "purged")
# What `outcome=` accepts besides one outcome: a group of them.
GROUPS = {"succeeded": ("acked", "popped"), "cancelled": ("cancelled", "cancelled_late")}
MAX_DAYS = 65535
PRUNE_SLICE = 5000  # rows per DELETE when pruning
PRUNE_BUDGET = 1.0  # seconds one housekeeping pass spends pruning at most
REPLAY_LIMIT = 100_000
_PRUNE_LOCK = "mqlite_prune:{table}"
Since = Union[datetime, timedelta, float, int, None]


@dataclass(frozen=True)
class HistoryEntry:
    """One finished message. `attempts` counts the attempt that ended it; `duration` is that last
    attempt's seconds (claim to end); `worker` is the `host:pid` that ended it."""

    queue: str
    id: int
    outcome: str
    attempts: int
    created_at: datetime
    first_claimed_at: datetime | None
    finished_at: datetime
    duration: float | None
    last_error: str | None
    worker: str | None
    body: bytes

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> HistoryEntry:
        queue, id_, outcome, attempts, created, first, finished, duration, error, worker, body = row
        return cls(queue, int(id_), outcome, int(attempts), created, first, finished,
                   None if duration is None else float(duration), error, worker, bytes(body))


def outcomes_of(outcome: str | Iterable[str] | None) -> tuple[str, ...]:
    """The outcomes `outcome` names (one, a group, several; None: all); ConfigError for others."""
    if outcome is None:
        return OUTCOMES
    try:
        names = [outcome] if isinstance(outcome, str) else list(outcome)
    except TypeError:  # not a name nor names (a number…): said as for an unknown one
        names = [outcome]  # type: ignore[list-item]
    found: list[str] = []
    for name in names:
        if not isinstance(name, str):
            raise ConfigError(f"unknown outcome {name!r}: one of {', '.join((*OUTCOMES, *GROUPS))}")
        if name in GROUPS:
            found += GROUPS[name]
        elif name in OUTCOMES:
            found.append(name)
        else:
            raise ConfigError(f"unknown outcome {name!r}: one of {', '.join((*OUTCOMES, *GROUPS))}")
    return tuple(dict.fromkeys(found)) or OUTCOMES


def since_params(since: Since) -> tuple[datetime | None, int]:
    """(absolute server time or None, microseconds back from now) for the history statements."""
    if since is None:
        return datetime(1970, 1, 1), 0
    if isinstance(since, datetime):
        return since, 0
    seconds = since.total_seconds() if isinstance(since, timedelta) else since
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= 3650 * 86400:
        raise ConfigError(f"since must be a datetime, a timedelta or seconds (0 to 10 years), not {since!r}")
    return None, int(seconds * 1e6)


class Recording(QueueCore):
    def keep_history(self, queue: str, days: int | None = 7) -> None:
        """Keep a history row for every message of `queue` that ends (acked, popped, failed for good,
        cancelled, purged) for `days` days; None turns it off (rows already kept stay until read or
        turned on again and pruned). Other processes follow within `ending.SETTINGS_TTL` seconds."""
        name = check_queue(queue)
        if days is not None and (isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS):
            raise ConfigError(f"days must be a whole number from 1 to {MAX_DAYS} (or None: off), not {days!r}")
        self._execute(sql.KEEP_HISTORY, (self.table, name, days, days))
        self._history.invalidate()

    def history_days(self, queue: str) -> int | None:
        """Days of history `queue` keeps (None: off), as this process sees it now."""
        return self._history.days(check_queue(queue))

    def history(
        self, queue: str, *, outcome: str | Iterable[str] | None = None, since: Since = None, limit: int = 100
    ) -> list[HistoryEntry]:
        """Finished messages of `queue`, newest first: of `outcome` (one of OUTCOMES, or "succeeded",
        "cancelled"), finished since `since` (a server-clock datetime, or a timedelta/seconds ago)."""
        return self._history_rows(sql.HISTORY_NEWEST, queue, outcome, since, limit)

    def replay(
        self, queue: str, *, since: Since, outcome: str | Iterable[str] | None = "failed", to: str | None = None,
        limit: int = REPLAY_LIMIT,
    ) -> list[int]:
        """Push copies of `queue`'s finished messages (of `outcome`, since `since`) onto `to` (default:
        `queue`), oldest first; returns the new ids. The history rows stay as they were."""
        target = check_queue(to if to is not None else queue)
        rows = self._history_rows(sql.HISTORY_OLDEST, queue, outcome, since, limit)
        ids: list[int] = []
        for start in range(0, len(rows), 1000):
            ids += self.push_many(target, [e.body for e in rows[start:start + 1000]])  # type: ignore[attr-defined]
        return ids

    def cancel(self, queue: str, message_id: int) -> str:
        """Cancel message `message_id` of `queue`; returns what happened.

        Ready, delayed or failed: deleted at once, "cancelled (was ready)" (…delayed, …failed), and
        recorded "cancelled" in the queue's history. Claimed: marked, "cancelling": the handler's next
        `checkpoint()`, `touch()` or `extend()` raises `errors.Cancelled` and the message ends
        cancelled, not retried; a handler that never checks in finishes, and its ack records it
        "cancelled_late". NotFound when no such message is in `queue`.
        """
        name = check_queue(queue)
        if isinstance(message_id, bool) or not isinstance(message_id, int) or not 1 <= message_id < 2**64:
            raise ConfigError(f"message id must be a positive whole number, not {message_id!r}")
        table = self._recording(name)
        sent: list[tuple[str, str | None]] = []  # answers whose COMMIT was sent

        def attempt() -> tuple[str, str | None] | None:
            earlier = sent[-1] if sent else None
            with self._pool.connection() as conn:
                cur = conn.cursor()
                try:
                    found = ending.cancel(cur, self._sql, name, message_id, table, sent.append)
                finally:
                    cur.close()
            # Gone on a retry: the try whose COMMIT reply was lost removed it (or its end came meanwhile).
            return earlier if found is None else found

        done = retry.call(self._policy, attempt)
        if done is None:
            raise NotFound(f"no message {message_id} in queue {name!r} (finished, or never there)")
        what, key = done
        if key is not None:
            self._promote(key)
        return what

    def prune_history(self, budget: float = PRUNE_BUDGET) -> int:
        """Delete history rows older than their queue's days, in slices, for about `budget` seconds at
        most; one process at a time (a named lock). Consumers call this as they recover; returns how many."""
        keep = self._history.all()
        if not keep:
            return 0
        lock = _PRUNE_LOCK.format(table=self.table)
        deadline = time.monotonic() + budget
        total = 0
        with self._pool.connection() as conn:
            cur = conn.cursor()
            try:
                cur.execute(sql.SCHEMA_LOCK, (lock, 0))
                if cur.fetchone()[0] != 1:
                    return 0  # another process is pruning
                try:
                    for queue, days in keep.items():
                        while time.monotonic() < deadline:
                            n = int(cur.execute(sql.PRUNE_HISTORY, (self.table, queue, days, PRUNE_SLICE)))
                            total += n
                            if n < PRUNE_SLICE:
                                break
                finally:
                    cur.execute(sql.SCHEMA_UNLOCK, (lock,))
                    cur.fetchall()
            finally:
                cur.close()
        if total:
            log.info("pruned %d history rows", total)
        return total

    def _history_rows(
        self, statement: str, queue: str, outcome: str | Iterable[str] | None, since: Since, limit: int
    ) -> list[HistoryEntry]:
        name = check_queue(queue)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= REPLAY_LIMIT:
            raise ConfigError(f"limit must be a whole number from 1 to {REPLAY_LIMIT}")
        wanted = outcomes_of(outcome)
        at, back = since_params(since)
        params = (self.table, name, at, back, *wanted, limit)
        return [HistoryEntry.from_row(r) for r in self._fetch(sql.Statements.in_list(statement, len(wanted)), params)]

    def _read_history_settings(self) -> dict[str, int]:
        return {q: int(d) for q, d in self._fetch(sql.HISTORY_SETTINGS, (self.table,))}
