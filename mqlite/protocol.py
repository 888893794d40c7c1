"""The optimistic pop, as the Dwango article has it: claim, read back on the same connection, delete.

    fetch(session, st, queue, n, lease_us, consume)
      1. claim:     UPDATE … SET owner = CONNECTION_ID(), claimed_at = NOW(6) WHERE owner = 0
                    AND priority IN (…) ORDER BY priority, available_at, id LIMIT n
                                                            -- two sessions never tag the same row
      2. read back: SELECT … WHERE owner = CONNECTION_ID() AND claimed_at > <last claim>
                    -- must be the same physical connection: the session id is the tag
      3. pop:       DELETE … the rows just read, before they are handed out (at-most-once)
         claim:     the rows stay owned until `ack` (DELETE) or `release`, from any connection

Every settling statement is fenced by (queue, priority, available_at, id, owner, owner_node, claimed_at):
it never touches a claim that was recovered and taken by someone else meanwhile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from . import sql
from .errors import Multiplexed
from .levels import Known, Levels
from .message import Message, Receipt
from .sql import Statements

_EPOCH = datetime(1970, 1, 1)
T = TypeVar("T")


class Session:
    """A dedicated claiming connection, and the rows it still owns.

    `id` is the server's CONNECTION_ID(), asked once when the session opens: behind a proxy the
    client's thread id is the proxy's own number, not the server session that tags the rows.
    """

    __slots__ = ("raw", "id", "last_claim", "out", "idle_since")

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        cur = raw.cursor()
        try:
            self.id = connection_id(cur)
        finally:
            cur.close()
        self.last_claim = _EPOCH  # server time of this session's newest claim
        self.out: set[int] = set()  # ids claimed here and not yet settled
        self.idle_since = 0.0


def connection_id(cur: Any) -> int:
    """The server session id (CONNECTION_ID()) the cursor's statements run on."""
    cur.execute(sql.CONNECTION_ID)
    return int(cur.fetchone()[0])


def check_pinned(cur: Any, session: Session, what: str) -> None:
    """Raise Multiplexed unless the cursor's statements still run on the session's server session.

    Called only when a claim reads back something other than what it claimed, so the claim's
    common path pays nothing for it.
    """
    now = connection_id(cur)
    if now != session.id:
        raise multiplexed(session.id, now, what)


def multiplexed(opened_on: int, now: int, what: str) -> Multiplexed:
    return Multiplexed(
        f"connection multiplexing detected: a claim session opened as server session {opened_on} ran "
        f"{what} on server session {now}. mqlite's claim tags rows with CONNECTION_ID() and must read "
        "them back on the same server session: connect directly, or pin mqlite's sessions in the proxy "
        "(ProxySQL: a query rule with multiplex=0 for mqlite's user, or mysql-multiplexing=false; no "
        "read/write split for it; MaxScale: readconnroute, not readwritesplit)"
    )


def fetch(
    session: Session, st: Statements, queue: str, n: int, lease_us: int, consume: bool,
    history: tuple[str, str] | None = None, levels: Levels | None = None,
) -> list[Message]:
    """Claim up to `n` ready rows of `queue` on `session` and read back exactly those.

    `consume=True` (pop) deletes them before returning (recording them in history when given
    `history` = (table name, worker label)); otherwise they stay claimed and are added to `session.out`.
    `levels`: the queue's priorities known so far (levels.py); without, the claim walks the queue's
    whole index range.
    """
    cur = session.raw.cursor()
    try:
        used = None if levels is None else levels.current()
        claimed = claim(cur, st, queue, n, lease_us, used)
        if claimed < n and levels is not None:
            # Maybe rows of a priority the list does not know yet: read it again, claim the rest.
            more = levels.recheck(used)
            if more is not None:
                claimed += claim(cur, st, queue, n - claimed, lease_us, more)
        if not claimed:
            return []
        rows = read_back(cur, st, queue, session, claimed)
        if consume:
            if history is not None:
                return _delete_recorded(cur, st, queue, rows, session, history)
            return delete_claimed(cur, st, queue, rows, session)
    finally:
        cur.close()
    session.out.update(m.id for m in rows)
    return rows


MANY_QUEUES = 64  # queues one multi-queue claim statement names at most (a batch is about 64 callers)


def fetch_many(
    session: Session, st: Statements, wants: dict[str, int], lease_us: int, consume: bool,
    levels: dict[str, Known] | None = None,
) -> dict[str, list[Message]]:
    """`fetch` for several queues at once: their heads claimed by one statement (per MANY_QUEUES).

    The statement finds each queue's head unlocked (over `levels[queue]`, its known priorities,
    when given), then takes the rows still free: a queue may come back short because it has no
    more, or because another session took a row in between; the caller claims its rest alone.
    Rows of a queue come back most urgent first, then oldest. Not for pops that keep history.
    """
    got: dict[str, list[Message]] = {q: [] for q in wants}
    known = levels or {}
    cur = session.raw.cursor()
    try:
        names = [q for q, n in wants.items() if n > 0]
        claimed = 0
        for start in range(0, len(names), MANY_QUEUES):
            chunk = names[start:start + MANY_QUEUES]
            used = [known.get(q) for q in chunk]
            params = [v for q, lv in zip(chunk, used, strict=True) for v in (q, *(lv or ()), wants[q])]
            statement = st.claim_many([None if lv is None else len(lv) for lv in used])
            claimed += int(cur.execute(statement, (*params, lease_us, st.table)))
        if not claimed:
            return got
        rows = read_back_any(cur, st, session, claimed)
        if consume:
            rows = delete_claimed_any(cur, st, rows, session)
        else:
            session.out.update(m.id for m in rows)
    finally:
        cur.close()
    for m in rows:
        got.setdefault(m.queue, []).append(m)
    for queue_rows in got.values():
        queue_rows.sort(key=lambda m: (m.priority, m.available_at, m.id))
    return got


def read_back_any(cur: Any, st: Statements, session: Session, claimed: int) -> list[Message]:
    """`read_back` for a claim of several queues: the `claimed` rows it tagged, any queue."""
    return _read_back(cur, session, claimed, (st.read_claimed_since_any, (session.last_claim,)),
                      (st.read_claimed_any, None))


def delete_claimed_any(cur: Any, st: Statements, rows: list[Message], session: Session) -> list[Message]:
    """`delete_claimed` for rows of several queues; returns those provably gone from the table."""
    deleted = 0
    for stamp in {m.claimed_at for m in rows}:
        keys = [v for m in rows if m.claimed_at == stamp for v in (m.queue, m.priority, m.available_at, m.id)]
        deleted += cur.execute(st.in_list(st.delete_claimed_many, len(keys) // 4, "(%s,%s,%s,%s)"), (*keys, stamp))
    if deleted == len(rows):
        return rows
    check_pinned(cur, session, "the delete of its claim")
    still_there = present(cur, st, [m.id for m in rows])
    return [m for m in rows if m.id not in still_there]


def claim(cur: Any, st: Statements, queue: str, n: int, lease_us: int, levels: Known) -> int:
    """Tag up to `n` ready rows of `queue` with this session's id, of the priorities `levels` (None:
    any); returns how many."""
    if levels is None:
        return int(cur.execute(st.claim, (lease_us, queue, st.table, queue, n)))
    statement = st.in_list(st.claim_levels, len(levels))
    return int(cur.execute(statement, (lease_us, queue, *levels, st.table, queue, n)))


def read_back(cur: Any, st: Statements, queue: str, session: Session, claimed: int) -> list[Message]:
    """The `claimed` rows the last `claim` on this session tagged.

    NOW(6) differs between statements of one session, so the last claim's rows are the ones newer
    than the session's previous claim; rows still out from earlier claims are not re-read.
    """
    return _read_back(cur, session, claimed, (st.read_claimed_since, (session.last_claim, queue)),
                      (st.read_claimed, (queue,)))


def _read_back(
    cur: Any, session: Session, claimed: int, since: tuple[str, Any], every: tuple[str, Any]
) -> list[Message]:
    cur.execute(*since)
    rows = [Message.from_row(r) for r in cur.fetchall()]
    if rows and rows[0].owner != session.id:
        # The SELECT ran on another server session than the one this session opened on.
        raise multiplexed(session.id, rows[0].owner, "the read-back of its claim")
    if len(rows) != claimed:
        # More rows than claimed carry our owner tag: another client's claim ran on our server
        # session (a multiplexer shares it). Fewer: the claim ran elsewhere, or the server clock
        # stepped back (then every row this session owns is read, minus those out).
        check_pinned(cur, session, "the read-back of its claim")
        if len(rows) > claimed:
            raise Multiplexed(
                f"connection multiplexing detected: a claim of {claimed} rows read back {len(rows)} rows "
                f"tagged with its server session {session.id}: another client's claim ran on the same "
                "server session (pin mqlite's sessions in the proxy, or connect directly)"
            )
        cur.execute(*every)
        rows = [m for m in map(Message.from_row, cur.fetchall()) if m.id not in session.out]
    for m in rows:
        if m.claimed_at is not None and m.claimed_at > session.last_claim:
            session.last_claim = m.claimed_at
    return rows


def delete_claimed(cur: Any, st: Statements, queue: str, rows: list[Message], session: Session) -> list[Message]:
    """Delete the rows one claim read back (pop); returns those provably gone from the table."""
    deleted = 0
    for stamp in {m.claimed_at for m in rows}:
        keys = [v for m in rows if m.claimed_at == stamp for v in (m.priority, m.available_at, m.id)]
        deleted += cur.execute(st.in_list(st.delete_claimed, len(keys) // 3, "(%s,%s,%s)"), (queue, *keys, stamp))
    if deleted == len(rows):
        return rows
    # Some row was not ours to delete any more (the session was killed and its rows recovered
    # meanwhile, or the DELETE ran on another server session): hand out only what is provably gone.
    check_pinned(cur, session, "the delete of its claim")
    still_there = present(cur, st, [m.id for m in rows])
    return [m for m in rows if m.id not in still_there]


def _delete_recorded(
    cur: Any, st: Statements, queue: str, rows: list[Message], session: Session, history: tuple[str, str]
) -> list[Message]:
    """`delete_claimed` with a 'popped' history row per message: the copies and the DELETEs go as
    one transaction in one round trip (`group`)."""
    table, worker = history
    stamps = sorted({m.claimed_at for m in rows if m.claimed_at is not None})
    steps: list[tuple[str, tuple[Any, ...]]] = []
    for stamp in stamps:
        keys = [v for m in rows if m.claimed_at == stamp for v in (m.priority, m.available_at, m.id)]
        copy = st.in_list(st.history_popped, len(keys) // 3, "(%s,%s,%s)")
        steps.append((copy, (worker, table, queue, *keys, stamp)))
    for stamp in stamps:
        keys = [v for m in rows if m.claimed_at == stamp for v in (m.priority, m.available_at, m.id)]
        steps.append((st.in_list(st.delete_claimed, len(keys) // 3, "(%s,%s,%s)"), (queue, *keys, stamp)))
    deleted = sum(group(cur, steps)[len(stamps):])
    if deleted == len(rows):
        return rows
    # Some row was not ours to delete any more (recovered meanwhile: the claim session was taken
    # for dead, or its lease ran out): as `delete_claimed`, and the copies of the rows left go too.
    check_pinned(cur, session, "the delete of its claim")
    still_there = present(cur, st, [m.id for m in rows])
    kept = [m for m in rows if m.id in still_there]
    if kept:
        since = min(m.claimed_at or _EPOCH for m in kept)
        cur.execute(st.in_list(sql.UNRECORD_POPPED, len(kept)), (table, queue, since, *[m.id for m in kept]))
    return [m for m in rows if m.id not in still_there]


def group(cur: Any, steps: list[tuple[str, tuple[Any, ...]]], *, read_committed: bool = False) -> list[int]:
    """Run `steps` (statement, parameters) as one transaction in one round trip: `START TRANSACTION;
    s1; s2; …; COMMIT` as a multi-statement query (mysqlclient connects with multi-statements on).
    Returns each step's row count. A step that fails stops the server there: rolled back, raised.
    `read_committed`: that transaction runs at READ COMMITTED (its reads take no locks)."""
    head = [sql.NEXT_READ_COMMITTED, sql.BEGIN] if read_committed else [sql.BEGIN]
    text = ";\n".join([*head, *(statement for statement, _ in steps), sql.COMMIT])
    params = tuple(v for _, values in steps for v in values)
    counts: list[int] = []
    try:
        cur.execute(text, params)  # the first result is START TRANSACTION's (or SET TRANSACTION's)
        if read_committed:
            cur.nextset()
        for _ in steps:
            cur.nextset()
            counts.append(int(cur.rowcount))
        cur.nextset()  # COMMIT's
    except BaseException:
        with contextlib.suppress(Exception):
            while cur.nextset():
                pass
        with contextlib.suppress(Exception):  # a connection gone has committed nothing
            cur.execute(sql.ROLLBACK)
        raise
    return counts


def transaction(cur: Any, steps: Callable[[], T]) -> T:
    """Run `steps` (statements on `cur`) as one transaction on an autocommit connection."""
    cur.execute(sql.BEGIN)
    try:
        result = steps()
    except BaseException:
        with contextlib.suppress(Exception):  # a connection gone has committed nothing
            cur.execute(sql.ROLLBACK)
        raise
    cur.execute(sql.COMMIT)
    return result


def release_since(cur: Any, st: Statements, since: datetime) -> int:
    """Undo the claims this session made after `since` (a fetch that failed half-way)."""
    return int(cur.execute(st.release_since, (since,)))


def owned(cur: Any, st: Statements) -> set[int]:
    """The ids this session owns now."""
    cur.execute(st.owned)
    return {int(r[0]) for r in cur.fetchall()}


def present(cur: Any, st: Statements, ids: list[int]) -> set[int]:
    """Which of `ids` are still in the table."""
    cur.execute(st.in_list(st.present, len(ids)), ids)
    return {int(r[0]) for r in cur.fetchall()}


# -- settling a claim: each one fenced statement, on any connection ---------------------------


def ack(cur: Any, st: Statements, r: Receipt) -> bool:
    """Delete a claimed message. False if the claim was lost (recovered and maybe re-taken)."""
    return bool(cur.execute(st.ack, r.fence()) == 1)


def ack_many(cur: Any, st: Statements, receipts: list[Receipt]) -> set[int]:
    """Delete many claimed messages in one statement; returns the ids that were still held."""
    fences = [v for r in receipts for v in r.fence()]
    deleted = cur.execute(st.in_list(st.ack_many, len(receipts), "(%s,%s,%s,%s,%s,%s,%s)"), fences)
    if deleted == len(receipts):
        return {r.id for r in receipts}
    if not deleted:
        return set()
    # Some claims were lost: a row still there was not ours to delete. A row gone was deleted now,
    # or before (acknowledged twice); at worst a repeat is reported done.
    still = present(cur, st, [r.id for r in receipts])
    return {r.id for r in receipts if r.id not in still}


def release(cur: Any, st: Statements, r: Receipt, delay_us: int) -> bool:
    """Put a claimed message back, available after `delay_us`, without counting an attempt."""
    return bool(cur.execute(st.release, (delay_us, delay_us, *r.fence())) == 1)


def retry_later(cur: Any, st: Statements, r: Receipt, attempts: int, error: str, delay_us: int) -> bool:
    """Record a failed attempt; the message is available again after `delay_us`."""
    return bool(cur.execute(st.retry_later, (attempts, error, delay_us, delay_us, *r.fence())) == 1)


def fail(cur: Any, st: Statements, r: Receipt, attempts: int, error: str) -> bool:
    """Record a failed attempt and take the message out of the ready set for good (until retried)."""
    return bool(cur.execute(st.fail, (attempts, error, *r.fence())) == 1)


def extend(cur: Any, st: Statements, r: Receipt, lease_us: int) -> bool:
    """Make a claim's lease run until `lease_us` from now."""
    return bool(cur.execute(st.extend, (lease_us, *r.fence())) == 1)


def checkpoint(cur: Any, st: Statements, r: Receipt, cursor: str, progress: float | None, lease_us: int) -> bool:
    """Save a handler's resume point on a claimed message and renew its lease."""
    return bool(cur.execute(st.checkpoint, (cursor, progress, lease_us, *r.fence())) == 1)
