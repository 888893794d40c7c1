"""Ending a message and leaving its history row, in one transaction on one connection.

A queue with history on (`Queue.keep_history`) gets, in the statement group that ends a message,
`INSERT INTO mqlite_history SELECT … FROM <messages> WHERE <the same fence>` just before the DELETE
(or UPDATE) that ends it. A grouped acknowledgement stays one group: BEGIN, the copy, the DELETE,
COMMIT, whatever the number of messages in it. Queues without history run the plain statements:
`HistorySettings` caches which queues keep history, so the hot path asks the server nothing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from . import protocol, sql
from .errors import MqliteError
from .message import Receipt
from .sql import Statements

log = logging.getLogger("mqlite")

SETTINGS_TTL = 5.0  # seconds a process may go on using a queue's old history setting
_label: tuple[int, str] | None = None


def worker_label() -> str:
    """`host:pid` of this process: the worker recorded in history rows."""
    global _label
    pid = os.getpid()
    if _label is None or _label[0] != pid:  # a forked child is another worker
        import socket  # here: `import mqlite` stays without it (start-up time)

        _label = (pid, f"{socket.gethostname()}:{pid}"[:255])
    return _label[1]


class HistorySettings:
    """Days of history each queue of a table keeps, read at most every `ttl` seconds (one query for
    every queue). Errors keep the last known settings (a table from before schema 007 has none)."""

    def __init__(self, fetch: Callable[[], dict[str, int]], ttl: float = SETTINGS_TTL) -> None:
        self._fetch = fetch
        self.ttl = ttl
        self._days: dict[str, int] = {}
        self._at = float("-inf")
        self._lock = threading.Lock()

    def days(self, queue: str) -> int | None:
        """Days kept for `queue`; None when its history is off."""
        if time.monotonic() - self._at >= self.ttl:
            self._refresh()
        return self._days.get(queue)

    def on(self, queue: str) -> bool:
        return self.days(queue) is not None

    def all(self) -> dict[str, int]:
        """Every queue with history on, and its days."""
        if time.monotonic() - self._at >= self.ttl:
            self._refresh()
        return dict(self._days)

    def invalidate(self) -> None:
        self._at = float("-inf")

    def _refresh(self) -> None:
        if not self._lock.acquire(blocking=self._at == float("-inf")):
            return  # another thread is reading them; the old ones serve meanwhile
        try:
            if time.monotonic() - self._at < self.ttl:
                return
            try:
                self._days = self._fetch()
            except MqliteError as exc:
                log.debug("history settings unreadable (schema 007 applied?): %s", exc)
            self._at = time.monotonic()
        finally:
            self._lock.release()


def ack_many(cur: Any, st: Statements, receipts: list[Receipt], table: str) -> set[int]:
    """`protocol.ack_many`, each message still held leaving a history row ('acked', or
    'cancelled_late' when it was cancelled while its handler ran): the copy and the DELETE in one
    round trip, at READ COMMITTED so that the copy locks nothing (the DELETE locks what it deletes).

    A claim lost between the copy's read and the DELETE (recovered in that instant) leaves a copy
    of a row not deleted: seen by the counts, that copy is deleted right after."""
    fences = tuple(v for r in receipts for v in r.fence())
    item = "(%s,%s,%s,%s,%s,%s,%s)"
    copy = st.in_list(st.history_acked, len(receipts), item)
    copied, deleted = protocol.group(cur, [(copy, (worker_label(), table, *fences)),
                                           (st.in_list(st.ack_many, len(receipts), item), fences)],
                                     read_committed=True)
    if deleted == len(receipts):
        return {r.id for r in receipts}
    if not deleted and not copied:
        return set()
    still = protocol.present(cur, st, [r.id for r in receipts])  # as protocol.ack_many
    extra = copied - deleted
    if extra > 0:
        kept = [r for r in receipts if r.id in still]
        for q in {r.queue for r in kept}:
            ids = [r.id for r in kept if r.queue == q]
            since = min(r.claimed_at for r in kept if r.queue == q)
            extra -= int(cur.execute(st.in_list(sql.UNRECORD_ACKED, len(ids)), (table, q, since, *ids)))
        if extra > 0:  # a row gone, deleted by another ending of its claim after our copy read it
            _unrecord_doubled(cur, [r for r in receipts if r.id not in still], table, extra)
    return {r.id for r in receipts if r.id not in still}


def _unrecord_doubled(cur: Any, gone: list[Receipt], table: str, extra: int) -> None:
    """Of messages recorded twice (our copy, and the ending that deleted them first), drop the
    newer 'acked'/'cancelled_late' row, at most `extra` rows (the copies our DELETE did not match)."""
    for q in {r.queue for r in gone}:
        ids = [r.id for r in gone if r.queue == q]
        since = min(r.claimed_at for r in gone if r.queue == q)
        cur.execute(sql.Statements.in_list(sql.HISTORY_ROWS_OF, len(ids)), (table, q, since, *ids))
        found: dict[int, list[tuple[Any, str]]] = {}
        for id_, finished, outcome in cur.fetchall():
            found.setdefault(int(id_), []).append((finished, outcome))
        for id_, recorded in found.items():
            ours = [f for f, outcome in recorded if outcome in ("acked", "cancelled_late")]
            if len(recorded) > 1 and ours and extra > 0:
                extra -= int(cur.execute(sql.UNRECORD_ONE, (table, q, ours[-1], id_)))


def fail(cur: Any, st: Statements, r: Receipt, attempts: int, error: str, table: str) -> bool:
    """`protocol.fail` with a 'failed' history row (failed for good: no attempt left, or given up)."""
    _, failed = protocol.group(cur, [
        (st.history_failed, (attempts, error, worker_label(), table, *r.fence())),
        (st.fail, (attempts, error, *r.fence())),
    ])
    return failed == 1


def finish_cancelled(cur: Any, st: Statements, r: Receipt, table: str | None) -> bool:
    """End a cancelling claim: deleted, with a 'cancelled' history row when `table` keeps history.
    False if the claim is not (or no longer) a cancelling one."""
    steps: list[tuple[str, tuple[Any, ...]]] = []
    if table is not None:
        steps.append((st.history_cancelled, (worker_label(), table, *r.fence())))
    steps.append((st.finish_cancelled, r.fence()))
    return protocol.group(cur, steps)[-1] == 1


def is_cancelling(cur: Any, st: Statements, r: Receipt) -> bool:
    """Whether this claim is still held and marked cancelling (after a fenced statement matched nothing)."""
    cur.execute(st.cancelling, (r.id, r.owner, r.node, r.claimed_at))
    row = cur.fetchone()
    return bool(row and row[0])


def cancel(
    cur: Any, st: Statements, queue: str, message_id: int, table: str | None,
    decided: Callable[[tuple[str, str | None]], object] | None = None,
) -> tuple[str, str | None] | None:
    """Cancel one message: (what happened, its concurrency key), None when it is not in `queue`.

    Not claimed (ready, delayed, parked or failed): deleted, 'cancelled (was ready)' etc., with a
    history row when `table` keeps history. Claimed: marked, 'cancelling'; its handler learns it
    at its next checkpoint, touch or extend. `decided` hears the answer before the COMMIT is sent
    (should its reply be lost, a retry that finds the message gone gives that answer)."""

    def steps() -> tuple[str, str | None] | None:
        cur.execute(st.cancel_lock, (message_id, queue))
        row = cur.fetchone()
        if row is None:
            return None
        owner, failed, later, key = row
        if int(owner):
            cur.execute(st.cancel_mark, (message_id,))
            done: tuple[str, str | None] = ("cancelling", None)
        else:
            was = "failed" if failed else "delayed" if later else "ready"
            if table is not None:
                cur.execute(st.in_list(st.history_ids, 1), ("cancelled", worker_label(), table, message_id))
            cur.execute(st.in_list(st.delete_ids, 1), (message_id,))
            done = (f"cancelled (was {was})", key)
        if decided is not None:
            decided(done)
        return done

    return protocol.transaction(cur, steps)


def purge_slice(cur: Any, st: Statements, select: str, params: tuple[Any, ...], table: str) -> int:
    """Delete one slice of what `select` lists (ids, locked), each leaving a 'purged' history row."""

    def steps() -> int:
        cur.execute(select, params)
        ids = [int(r[0]) for r in cur.fetchall()]
        if not ids:
            return 0
        cur.execute(st.in_list(st.history_ids, len(ids)), ("purged", worker_label(), table, *ids))
        return int(cur.execute(st.in_list(st.delete_ids, len(ids)), ids))

    return protocol.transaction(cur, steps)


# Steps whose statement leaves a cancelling claim alone (sql.Statements: `cancelled_at IS NULL`): their
# 0-row answer is checked with `is_cancelling`.
SPARING_CANCELLING = (protocol.release, protocol.retry_later, protocol.fail, fail, protocol.extend, protocol.checkpoint)
