"""Taking messages out: `pop` (at-most-once), `claim`/`take` (at-least-once) and settling a claim
(ack, nack, fail, release, extend, checkpoint); recovery of orphaned claims; concurrency slots."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from . import claim as protocol
from . import recovery, retry
from .base import QueueCore
from .claim import Claimer
from .config import MAX_DELAY, check_queue, delay_us
from .errors import Interrupted, NotClaimed
from .failure import describe
from .message import Message, Receipt

log = logging.getLogger("mqlite")

Claimable = Message | Receipt | str


class _Held:
    """What a message taken by `claim` knows about its claim, so `message.fail()` etc. work."""

    def __init__(self, owner: Consuming, lease: float, interrupt: threading.Event | None) -> None:
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


class Consuming(QueueCore):
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
        if not (isinstance(lease, (int, float)) and 0 < lease <= MAX_DELAY):
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
        done = self._settled(r, self._acks.ack(r), key=ckey)
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
            done = self._settle(r, protocol.retry_later, attempts + 1, text, delay_us(wait, None), key=ckey)
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
        return self._settle(r, protocol.release, delay_us(delay, None), key=self._known_of(message, r)[2])

    def extend(self, message: Claimable, seconds: float) -> bool:
        """Make a claim's lease run until `seconds` from now. False if the claim was lost."""
        if isinstance(message, Message) and message._handle is not None and message._handle.finished:
            raise NotClaimed(f"message {message.id} was already settled")
        return self._settle(_receipt(message), protocol.extend, delay_us(seconds, None), finishing=False)

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
        args = (cursor, None if progress is None else float(progress), delay_us(lease, None))
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
        except BaseException:
            if finishing:
                self._forget(r)
            raise
        return self._settled(r, done, finishing=finishing, key=key)

    def _settled(self, r: Receipt, done: bool, *, finishing: bool = True, key: str | None = None) -> bool:
        if finishing:
            self._forget(r)
        if not done:
            log.warning("message %s: claim gone (recovered elsewhere); it will be delivered again", r.id)
        elif key is not None:
            self._promote(key)  # its slot is free: the next message of the key may run
        return done

    def _forget(self, r: Receipt) -> None:
        for claimer in list(self._claimers.values()):
            if claimer.queue == r.queue:
                claimer.done_id(r.owner, r.id)

    def _delete_acked(self, receipts: list[Receipt]) -> set[int]:
        """One statement for a group of acknowledgements; returns the ids deleted."""
        st = self._sql

        def attempt() -> set[int]:
            with self._pool.connection() as conn:
                cur = conn.cursor()
                try:
                    fences = [v for r in receipts for v in r.fence()]
                    statement = st.in_list(st.ack_many, len(receipts), "(%s,%s,%s,%s,%s,%s)")
                    deleted = cur.execute(statement, fences)
                    if deleted == len(receipts):
                        return {r.id for r in receipts}
                    # Some claims were lost: a row still there was not ours to delete. A row gone
                    # was deleted now, or before (acknowledged twice): nothing deleted now settles
                    # it; otherwise the gone ones count as deleted (at worst a repeat is reported done).
                    cur.execute(st.in_list(st.present, len(receipts)), [r.id for r in receipts])
                    still = {int(row[0]) for row in cur.fetchall()}
                    return {r.id for r in receipts if r.id not in still} if deleted else set()
                finally:
                    cur.close()

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


def _receipt(message: Claimable) -> Receipt:
    if isinstance(message, Message):
        return message.receipt
    if isinstance(message, Receipt):
        return message
    if isinstance(message, str):
        return Receipt.parse(message)
    raise TypeError(f"expected a Message, Receipt or receipt string, not {type(message).__name__}")
