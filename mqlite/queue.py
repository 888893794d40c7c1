"""`Queue`: the public verbs over one messages table, each a short method over claim, recovery and the pool."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from . import claim as protocol
from . import recovery, registry, retry, schema
from .claim import Claimer
from .config import DEFAULT_TABLE, check_queue, parse_dsn, resolve_dsn
from .counters import Counters
from .errors import DatabaseError, Duplicate, Interrupted, NotClaimed, PayloadTooLarge
from .failure import Backoff, describe
from .message import Body, Message, Receipt, as_bytes
from .pool import Pool
from .sql import statements

log = logging.getLogger("mqlite")

_STATEMENT_HEADROOM = 1024  # bytes kept free in a packet for the statement text around the values
_MAX_ROWS_PER_INSERT = 1000
_MAX_INSERT_BYTES = 4 << 20  # a multi-row INSERT larger than this gains nothing and holds locks longer
_PURGE_SLICE = 5000
_MAX_DELAY = 100 * 365 * 86400.0  # keeps NOW() + delay inside DATETIME's range
_ER_DUP_ENTRY = 1062

Claimable = Message | Receipt | str


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


@dataclass(frozen=True)
class Stats:
    """Every queue in the table, and whether recovery can see every session (PROCESS privilege)."""

    queues: dict[str, QueueStats]
    sees_all_connections: bool


class _Held:
    """What a message taken by `claim` knows about its claim, so `message.fail()` etc. work."""

    def __init__(self, owner: Queue, lease: float, interrupt: threading.Event | None) -> None:
        self.owner = owner
        self.lease = lease
        self.interrupt = interrupt
        self.finished = False

    def touch(self, m: Message) -> None:
        self.extend(m, self.lease)

    def extend(self, m: Message, seconds: float) -> None:
        if not self.owner.extend(m, seconds):
            raise NotClaimed(f"message {m.id}: the claim was lost (recovered after its lease or owner died)")

    def fail(self, m: Message, reason: str | BaseException) -> None:
        self.owner.fail(m, reason)

    def release(self, m: Message, delay: float) -> None:
        self.owner.release(m, delay)

    def checkpoint(self, m: Message, cursor: str, progress: float | None) -> None:
        if not self.owner.checkpoint(m, cursor, progress, lease=self.lease):
            raise NotClaimed(f"message {m.id}: the claim was lost (recovered after its lease or owner died)")
        if self.interrupt is not None and self.interrupt.is_set():
            raise Interrupted(f"message {m.id}: stopping at cursor {cursor!r}")


class Queue:
    """A handle on one messages table. Thread-safe; one per process is the intended use.

    `dsn=None` reads `MQLITE_DSN`. Connections are pooled (at most `pool_size`), opened lazily,
    and time out after `connect_timeout` seconds. Transient errors are retried for up to
    `retry_for` seconds (0 disables). A message whose handler fails is retried after `backoff`
    and becomes failed after `max_attempts`. Consumers run recovery themselves, at most every
    `recover_every` seconds (0 disables) when they find a queue empty, and every
    `6 * recover_every` seconds otherwise. A DSN may list several hosts
    (`mysql://u:p@h1:3306,h2:3306/db`): `routing="single"` sends everything to the first that
    answers and moves to the next when it dies; `"spread"` spreads connections over all of them.
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
        routing: Literal["single", "spread"] = "single",
    ) -> None:
        self.settings = parse_dsn(resolve_dsn(dsn))
        self._sql = statements(table)
        self.table = table
        self.max_attempts = _check_attempts(max_attempts)
        self.backoff = backoff
        self.recover_every = recover_every
        self._pool = Pool(
            self.settings, size=pool_size, connect_timeout=connect_timeout, checkout_timeout=checkout_timeout,
            routing=routing,
        )
        self._policy = retry.transient_policy(retry_for) if retry_for > 0 else None
        self._claimers: dict[tuple[str, bool, float], Claimer] = {}
        self._claimers_lock = threading.Lock()
        self._counters = Counters(self._flush_counts)
        self._last_recover = float("-inf")  # a fresh consumer recovers orphans the first time it finds nothing
        self._recover_lock = threading.Lock()

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
        with self._claimers_lock:
            claimers, self._claimers = list(self._claimers.values()), {}
        unreturned = [m for claimer in claimers for m in claimer.close()]
        if unreturned:
            # Consumed for a pop whose caller gave up before taking it: put it back, same id.
            self._restore(unreturned)
        self._counters.flush()
        self._pool.close()

    # -- producing -------------------------------------------------------------

    def push(
        self,
        queue: str,
        body: Body,
        *,
        delay: float | None = None,
        run_at: datetime | None = None,
        unique_key: str | None = None,
        if_exists: Literal["raise", "ignore"] = "raise",
        max_attempts: int | None = None,
        concurrency_key: str | None = None,
        max_running: int = 1,
    ) -> int:
        """Append one message; returns its id.

        `delay` seconds or `run_at` (converted to a delay on this machine's clock) hide it until
        then. With `unique_key`, a second push of the same key while the first is in the table
        raises Duplicate (`if_exists="ignore"`: returns the existing id), and a push retried after
        a lost connection is idempotent. Without one, a retry after a lost reply may store the
        message twice (at-least-once). With `concurrency_key`, at most `max_running` messages of
        that key (across queues, consumers and processes) are handed out at once; the others wait.
        PayloadTooLarge is raised before anything is sent.
        """
        name = check_queue(queue)
        data = as_bytes(body)
        delay_us = _delay_us(delay, run_at)
        key = _check_key(unique_key, "unique_key")
        if if_exists not in ("raise", "ignore"):
            raise ValueError("if_exists must be 'raise' or 'ignore'")
        limit = None if max_attempts is None else _check_attempts(max_attempts)
        ckey = _check_key(concurrency_key, "concurrency_key")
        if ckey is not None:
            _check_attempts(max_running, "max_running")
        plain = not delay_us and key is None and limit is None and ckey is None
        tries = 0

        def attempt() -> int:
            nonlocal tries
            tries += 1
            with self._pool.connection() as conn:
                self._check_fits(conn, name, data)
                cur = conn.cursor()
                if plain:
                    cur.execute(self._sql.push, (name, data))
                elif ckey is None:
                    cur.execute(self._sql.push_with, (name, data, delay_us, key, limit))
                else:
                    cur.execute(self._sql.set_cap, (self.table, ckey, max_running, max_running))
                    cur.execute(self._sql.push_keyed, (name, data, delay_us, key, limit, ckey))
                new_id = cur.lastrowid
                cur.close()
                return int(new_id)

        try:
            new_id = retry.call(self._policy, attempt)
        except DatabaseError as exc:
            if exc.code != _ER_DUP_ENTRY or key is None:
                raise
            found = self._fetch(self._sql.find_unique, (name, key))
            existing = int(found[0][0]) if found else None
            # On a retry, the row with our key is our own first attempt, committed before its reply was lost.
            if existing is not None and (if_exists == "ignore" or tries > 1):
                return existing
            raise Duplicate(
                f"queue {name!r} already holds a message with unique key {key!r} (id {existing})", existing
            ) from None
        if ckey is not None:
            self._promote(ckey)
        return new_id

    def push_many(self, queue: str, bodies: Iterable[Body]) -> list[int]:
        """Append many messages in one transaction (all or none); returns their ids in order."""
        name = check_queue(queue)
        datas = [as_bytes(b) for b in bodies]
        if not datas:
            return []

        def attempt() -> list[int]:
            with self._pool.connection() as conn:
                chunks = self._plan_chunks(conn, name, datas)
                increment = self._pool.server.auto_increment_increment if self._pool.server else 1
                ids: list[int] = []
                cur = conn.cursor()
                cur.execute("START TRANSACTION")
                for chunk in chunks:
                    params: list[Any] = []
                    for data in chunk:
                        params += (name, data)
                    cur.execute(self._sql.push_many(len(chunk)), params)
                    # A multi-row INSERT with known row count takes consecutive auto-increment
                    # values (InnoDB reserves them at once, in every autoinc lock mode).
                    first = int(cur.lastrowid)
                    ids.extend(first + i * increment for i in range(len(chunk)))
                conn.commit()
                cur.close()
                return ids

        return retry.call(self._policy, attempt)

    def _check_fits(self, conn: Any, queue: str, data: bytes) -> None:
        limit = self._pool.server.max_allowed_packet if self._pool.server else 0
        if limit and self._escaped_size(conn, data, limit) + len(queue) * 8 + _STATEMENT_HEADROOM > limit:
            raise PayloadTooLarge(
                f"body of {len(data)} bytes does not fit the server's max_allowed_packet of {limit} bytes"
            )

    @staticmethod
    def _escaped_size(conn: Any, data: bytes, limit: int) -> int:
        # Escaping at most doubles a body; count exactly only when the bound is not enough.
        if 2 * len(data) + _STATEMENT_HEADROOM <= limit // 2:
            return 2 * len(data)
        return len(conn.escape_string(data))

    def _plan_chunks(self, conn: Any, queue: str, datas: list[bytes]) -> list[list[bytes]]:
        limit = self._pool.server.max_allowed_packet if self._pool.server else 1 << 20
        budget = min(limit, _MAX_INSERT_BYTES) - _STATEMENT_HEADROOM
        chunks: list[list[bytes]] = []
        current: list[bytes] = []
        used = 0
        for data in datas:
            self._check_fits(conn, queue, data)
            size = self._escaped_size(conn, data, limit) + len(queue) * 8 + 32
            if current and (used + size > budget or len(current) >= _MAX_ROWS_PER_INSERT):
                chunks.append(current)
                current, used = [], 0
            current.append(data)
            used += size
        chunks.append(current)
        return chunks

    # -- consuming -------------------------------------------------------------

    def pop(self, queue: str) -> Message | None:
        """Take the oldest ready message, deleting it before returning (at-most-once).

        Returns None at once when nothing is ready; never blocks waiting for a message.
        """
        return self._take_from(self._claimer(check_queue(queue), consume=True, lease=30.0))

    @contextmanager
    def claim(
        self, queue: str, *, lease: float = 30.0, interrupt: threading.Event | None = None
    ) -> Iterator[Message | None]:
        """Claim the oldest ready message for the `with` block (at-least-once); None if none is ready.

        Exiting normally deletes the message. Raising records a failed attempt (error and traceback
        kept on the row) and makes it available again after the backoff, or failed after
        `max_attempts`. Inside, `message.touch()` renews the `lease` (seconds), `message.fail()`
        or `message.release()` settle it differently, and `message.checkpoint()` saves where a
        long handler has got to (raising Interrupted once `interrupt` is set). If the process dies
        inside the block, the claim comes back by recovery.
        """
        message = self.take(queue, lease=lease, interrupt=interrupt)
        if message is None:
            yield None
            return
        handle: _Held = message._handle
        try:
            yield message
        except BaseException as exc:
            if not handle.finished:
                if isinstance(exc, Exception):
                    self.nack(message, exc)
                else:  # interrupted (KeyboardInterrupt, SystemExit): not the message's fault
                    self.release(message)
            raise
        else:
            if not handle.finished:
                self.ack(message)

    def take(
        self, queue: str, *, lease: float = 30.0, interrupt: threading.Event | None = None
    ) -> Message | None:
        """Claim the oldest ready message without a `with` block; settle it with ack/nack/release/fail.

        For consumers whose acknowledgement happens elsewhere (another thread, an HTTP call):
        `message.receipt` (or `str(message.receipt)`) names the claim.
        """
        if not (isinstance(lease, (int, float)) and 0 < lease <= _MAX_DELAY):
            raise ValueError("lease must be a positive number of seconds")
        message = self._take_from(self._claimer(check_queue(queue), consume=False, lease=float(lease)))
        if message is None:
            return None
        return replace(message, _handle=_Held(self, float(lease), interrupt))

    def _take_from(self, claimer: Claimer) -> Message | None:
        message = retry.call(self._policy, claimer.take)
        if self._maybe_recover(found_empty=message is None) and message is None:
            message = retry.call(self._policy, claimer.take)  # what recovery just put back
        return message

    def ack(self, message: Claimable) -> bool:
        """Delete a claimed message (done). False if its claim was lost meanwhile (it will be redelivered)."""
        r = self._settling(message)
        _, _, ckey = self._known_of(message, r)
        done = self._settle(r, protocol.ack, key=ckey)
        if done:
            self._counters.add(r.queue, processed=1)
        return done

    def nack(self, message: Claimable, error: str | BaseException | None = None, *, delay: float | None = None) -> bool:
        """Record a failed attempt: available again after `delay` (default: the backoff), or failed
        once `max_attempts` attempts have failed. False if the claim was lost meanwhile."""
        r = self._settling(message)
        attempts, limit, ckey = self._known_of(message, r)
        text = describe(error)
        if attempts + 1 >= limit:
            done = self._settle(r, protocol.fail, attempts + 1, text, key=ckey)
        else:
            wait = self.backoff.delay(attempts + 1) if delay is None else delay
            done = self._settle(r, protocol.retry_later, attempts + 1, text, _delay_us(wait, None), key=ckey)
        if done:
            self._counters.add(r.queue, failed=1)
        return done

    def fail(self, message: Claimable, reason: str | BaseException) -> bool:
        """Give up on a claimed message: failed at once, kept with `reason`. False if the claim was lost."""
        r = self._settling(message)
        attempts, _, ckey = self._known_of(message, r)
        done = self._settle(r, protocol.fail, attempts + 1, describe(reason), key=ckey)
        if done:
            self._counters.add(r.queue, failed=1)
        return done

    def release(self, message: Claimable, delay: float = 0.0) -> bool:
        """Put a claimed message back, available after `delay` seconds, without counting an attempt."""
        r = self._settling(message)
        return self._settle(r, protocol.release, _delay_us(delay, None), key=self._known_of(message, r)[2])

    def extend(self, message: Claimable, seconds: float) -> bool:
        """Make a claim's lease run until `seconds` from now. False if the claim was lost."""
        if isinstance(message, Message) and message._handle is not None and message._handle.finished:
            raise NotClaimed(f"message {message.id} was already settled")
        return self._settle(_receipt(message), protocol.extend, _delay_us(seconds, None), finishing=False)

    def checkpoint(
        self, message: Claimable, cursor: str, progress: float | None = None, *, lease: float = 30.0
    ) -> bool:
        """Save `cursor` (and `progress`) on a claimed message and renew its lease for `lease` seconds.

        The next consumer of this message, after a release, failure or recovery, sees them on
        `message.cursor` / `message.progress`. False if the claim was lost.
        """
        if not isinstance(cursor, str) or len(cursor) > 16_000:
            raise ValueError("cursor must be a string of at most 16000 characters")
        if progress is not None and not (isinstance(progress, (int, float)) and math.isfinite(progress)):
            raise ValueError(f"progress must be a finite number, got {progress!r}")
        args = (cursor, None if progress is None else float(progress), _delay_us(lease, None))
        return self._settle(_receipt(message), protocol.checkpoint, *args, finishing=False)

    def _settling(self, message: Claimable) -> Receipt:
        handle = message._handle if isinstance(message, Message) else None
        if handle is not None:
            if handle.finished:
                raise NotClaimed(f"message {message.id} was already settled")  # type: ignore[union-attr]
            handle.finished = True
        return _receipt(message)

    def _known_of(self, message: Claimable, r: Receipt) -> tuple[int, int, str | None]:
        """(attempts so far, max attempts, concurrency key) of a claimed message."""
        if isinstance(message, Message):
            return message.attempts, message.max_attempts or self.max_attempts, message.concurrency_key
        rows = self._fetch(self._sql.find_attempts, (r.id,))
        attempts, limit, ckey = rows[0] if rows else (0, None, None)
        return int(attempts), int(limit or self.max_attempts), ckey

    def _settle(self, r: Receipt, step: Any, *args: Any, finishing: bool = True, key: str | None = None) -> bool:
        def attempt() -> bool:
            with self._pool.connection() as conn:
                cur = conn.cursor()
                try:
                    return bool(step(cur, self._sql, r, *args))
                finally:
                    cur.close()

        try:
            done = retry.call(self._policy, attempt)
        finally:
            if finishing:
                for claimer in list(self._claimers.values()):
                    if claimer.queue == r.queue:
                        claimer.done_id(r.owner, r.id)
        if not done:
            log.warning("message %s: claim gone (recovered elsewhere); it will be delivered again", r.id)
        elif key is not None:
            self._promote(key)  # its slot is free: the next message of the key may run
        return done

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

    def _claimer(self, queue: str, *, consume: bool, lease: float) -> Claimer:
        key = (queue, consume, lease)
        claimer = self._claimers.get(key)
        if claimer is None:
            with self._claimers_lock:
                claimer = self._claimers.get(key)
                if claimer is None:
                    claimer = Claimer(
                        self._pool.open_session, self._pool.translating, self._sql, queue,
                        consume=consume, lease=lease,
                        on_consumed=(lambda n, q=queue: self._counters.add(q, processed=n)) if consume else None,
                    )
                    self._claimers[key] = claimer
        return claimer

    def _restore(self, messages: list[Message]) -> None:
        with self._pool.connection() as conn:
            cur = conn.cursor()
            for m in messages:
                cur.execute(self._sql.restore, (m.id, m.queue, m.body, m.created_at, m.available_at,
                                                m.attempts, m.max_attempts, m.unique_key, m.concurrency_key))
            cur.close()

    # -- recovery and failed messages --------------------------------------------

    def recover(self) -> recovery.Recovery:
        """Put back claims whose owner is gone: dead session, claimed before the server restarted,
        or (without the PROCESS privilege) lease expired."""

        def attempt() -> recovery.Recovery:
            with self._pool.connection() as conn:
                return recovery.recover(conn, self._sql, self.max_attempts)

        report = retry.call(self._policy, attempt)
        if report.total:
            log.info("recovered %d claims (%s)", report.total, report)
        self._promote_due()
        return report

    def _maybe_recover(self, found_empty: bool) -> int:
        """Recover if due; returns how many claims came back."""
        if not self.recover_every:
            return 0
        since = time.monotonic() - self._last_recover
        if since < (self.recover_every if found_empty else 6 * self.recover_every):
            return 0
        if not self._recover_lock.acquire(blocking=False):
            return 0
        try:
            self._last_recover = time.monotonic()
            return self.recover().total
        except Exception as exc:  # a consumer must not fail because housekeeping did
            log.warning("opportunistic recovery failed: %s", exc)
            return 0
        finally:
            self._recover_lock.release()

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
        return self._sliced(self._sql.purge_failed, (check_queue(queue), _delay_us(seconds, None)))

    # -- schema ----------------------------------------------------------------

    def apply_schema(self) -> list[schema.Migration]:
        """Create or upgrade the messages table; returns the migrations applied (empty: up to date)."""
        with self._pool.connection() as conn:
            return schema.apply(conn, self.table)

    def schema_status(self) -> schema.SchemaStatus:
        """Applied and pending schema versions of the messages table."""
        with self._pool.connection() as conn:
            return schema.status(conn, self.table)

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
                cur.close()
            queues = {}
            for q in sorted(set(depth) | set(totals)):
                ready, delayed, claimed, failed, oldest, age = depth.get(q, (0, 0, 0, 0, None, None))
                processed, failed_total, since, paused = totals.get(q, (0, 0, None, 0))
                queues[q] = QueueStats(
                    q, int(ready or 0), int(delayed or 0), int(claimed or 0), int(failed or 0),
                    int(processed), int(failed_total), oldest, None if age is None else float(age), since,
                    bool(paused),
                )
            return Stats(queues, sees_all)

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
        return self._registry(registry.list_workers)

    def _registry(self, step: Any, *args: Any) -> Any:
        """Run one registry step (register, heartbeat, unregister) with the usual retries."""

        def attempt() -> Any:
            with self._pool.connection() as conn:
                cur = conn.cursor()
                try:
                    return step(cur, self._sql, *args)
                finally:
                    cur.close()

        return retry.call(self._policy, attempt)

    def reset_counters(self, queue: str | None = None) -> None:
        """Zero the processed/failed totals of `queue` (or of every queue)."""
        name = None if queue is None else check_queue(queue)
        self._counters.flush()
        self._execute(self._sql.reset_counts, (self.table, name, name))

    def purge(self, queue: str) -> int:
        """Delete every ready and delayed message of `queue`; returns how many. Claimed messages are
        left to finish; failed ones stay for `purge_failed`."""
        return self._sliced(self._sql.purge, (check_queue(queue),))

    # -- helpers ---------------------------------------------------------------

    def _flush_counts(self, counts: dict[str, list[int]]) -> None:
        def attempt() -> None:
            with self._pool.connection() as conn:
                cur = conn.cursor()
                for q, (processed, failed) in counts.items():
                    cur.execute(self._sql.add_counts, (self.table, q, processed, failed, processed, failed))
                cur.close()

        retry.call(self._policy, attempt)

    def _sliced(self, statement: str, params: tuple) -> int:
        total = 0
        while True:
            n = self._execute(statement, (*params, _PURGE_SLICE))
            total += n
            if n < _PURGE_SLICE:
                return total

    def _fetch(self, statement: str, params: tuple) -> list[tuple]:
        def attempt() -> list[tuple]:
            with self._pool.connection() as conn:
                cur = conn.cursor()
                cur.execute(statement, params)
                rows = list(cur.fetchall())
                cur.close()
                return rows

        return retry.call(self._policy, attempt)

    def _execute(self, statement: str, params: tuple) -> int:
        def attempt() -> int:
            with self._pool.connection() as conn:
                cur = conn.cursor()
                n = cur.execute(statement, params)
                cur.close()
                return int(n)

        return retry.call(self._policy, attempt)


def _receipt(message: Claimable) -> Receipt:
    if isinstance(message, Message):
        return message.receipt
    if isinstance(message, Receipt):
        return message
    if isinstance(message, str):
        return Receipt.parse(message)
    raise TypeError(f"expected a Message, Receipt or receipt string, not {type(message).__name__}")


def _delay_us(delay: float | None, run_at: datetime | None) -> int:
    if delay is not None and run_at is not None:
        raise ValueError("give delay or run_at, not both")
    if run_at is not None:
        if not isinstance(run_at, datetime):
            raise TypeError("run_at must be a datetime")
        now = datetime.now(timezone.utc) if run_at.tzinfo else datetime.now()
        delay = max(0.0, (run_at - now).total_seconds())
    if delay is None:
        return 0
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not math.isfinite(delay):
        raise ValueError(f"delay must be a number of seconds, got {delay!r}")
    if not 0 <= delay <= _MAX_DELAY:
        raise ValueError(f"delay must be between 0 and {_MAX_DELAY:.0f} seconds, got {delay}")
    return int(delay * 1e6)


def _check_key(key: str | None, what: str) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not 1 <= len(key) <= 191:
        raise ValueError(f"{what} must be a string of 1 to 191 characters")
    return key


def _check_attempts(n: int, what: str = "max_attempts") -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 65535:
        raise ValueError(f"{what} must be an integer from 1 to 65535, got {n!r}")
    return n


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
