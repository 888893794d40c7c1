"""Settling a claim: ack (alone, grouped, or many at once), nack, fail, release, extend, checkpoint.

Settling a message with a concurrency key frees its slot: the next parked one is promoted
(`QueueCore._promote`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any, Union

from . import ending, protocol, retry
from .base import QueueCore
from .config import delay_us
from .errors import Cancelled, NotClaimed
from .failure import describe
from .held import Held, settled_if_cancelled
from .message import Message, Receipt
from .txn import Borrowed, borrow

log = logging.getLogger("mqlite")
__all__ = ["ACK_GROUP", "Claimable", "Held", "Settling", "receipt_of"]

Claimable = Union[Message, Receipt, str]
ACK_GROUP = 500  # receipts per grouped DELETE


class Settling(QueueCore):
    def ack(self, message: Claimable, *, connection: Any = None) -> bool:
        """Delete a claimed message (done). False if its claim was lost meanwhile (it will be redelivered).

        Acknowledgements from many threads go out together, one DELETE for all that arrive while
        the previous one runs. With `connection` (see `mqlite.txn`), the fenced DELETE runs in the
        caller's transaction instead, so the handler's writes and the acknowledgement commit
        together; a lost claim raises NotClaimed there (roll back: the message is delivered again).
        """
        if connection is not None:
            return self._ack_on(borrow(connection), message)
        r = self._settling(message)
        _, _, ckey = self._known_of(message, r)
        try:
            [deleted] = self._acks.submit([r])
        except BaseException:
            # Not acknowledged: the claim stays, and no longer counts as its session's to keep
            # (an idle session may then close, and recovery deliver the message again).
            self._sessions.settled(r.owner, r.id)
            raise
        done = self._settled(r, deleted, key=ckey)
        if done:
            self._counters.add(r.queue, processed=1)
        return done

    def ack_many(self, messages: Iterable[Claimable]) -> int:
        """Delete many claimed messages in one statement; returns how many were still held.

        A message whose claim was lost meanwhile (recovered, maybe re-taken) is left alone and
        not counted; it will be delivered again.
        """
        return sum(self.ack_each(messages))

    def ack_each(self, messages: Iterable[Claimable]) -> list[bool]:
        """`ack_many`, saying for each message (in order) whether its claim was still held."""
        todo = [(r, self._known_of(m, r)[2]) for m in messages for r in [self._settling(m)]]
        done: list[bool] = []
        for start in range(0, len(todo), ACK_GROUP):
            chunk = todo[start:start + ACK_GROUP]
            deleted = self._acks.submit([r for r, _ in chunk])
            for (r, ckey), ok in zip(chunk, deleted, strict=True):
                done.append(self._settled(r, ok, key=ckey))
                if done[-1]:
                    self._counters.add(r.queue, processed=1)
        return done

    def nack(self, message: Claimable, error: str | BaseException | None = None, *, delay: float | None = None) -> bool:
        """Record a failed attempt: available again after `delay` (default: the backoff), or failed
        once `max_attempts` attempts have failed. False if the claim was lost meanwhile."""
        r = self._settling(message)
        attempts, limit, ckey = self._known_of(message, r)
        text = describe(error)
        if attempts + 1 >= limit:
            done = self._fail(r, attempts + 1, text, ckey)
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
        done = self._fail(r, attempts + 1, describe(reason), ckey)
        if done:
            self._counters.add(r.queue, failed=1)
        return done

    def _fail(self, r: Receipt, attempts: int, error: str, key: str | None) -> bool:
        table = self._recording(r.queue)
        if table is None:
            return self._settle(r, protocol.fail, attempts, error, key=key)
        return self._settle(r, ending.fail, attempts, error, table, key=key)

    def release(self, message: Claimable, delay: float = 0.0) -> bool:
        """Put a claimed message back, available after `delay` seconds, without counting an attempt."""
        r = self._settling(message)
        return self._settle(r, protocol.release, delay_us(delay, None), key=self._known_of(message, r)[2])

    def extend(self, message: Claimable, seconds: float) -> bool:
        """Make a claim's lease run until `seconds` from now. False if the claim was lost; raises
        Cancelled (the message has ended, cancelled) if `Queue.cancel` marked it meanwhile."""
        if isinstance(message, Message) and message._handle is not None and message._handle.finished:
            if message._handle.cancelled:
                raise Cancelled(f"message {message.id} was cancelled: it has ended, not to be retried")
            raise NotClaimed(f"message {message.id} was already settled")
        with settled_if_cancelled(message):
            return self._settle(receipt_of(message), protocol.extend, delay_us(seconds, None), finishing=False)

    def checkpoint(
        self, message: Claimable, cursor: str, progress: float | None = None, *, lease: float = 30.0
    ) -> bool:
        """Save `cursor` (and `progress`) on a claimed message and renew its lease for `lease` seconds.

        The next consumer of this message, after a release, failure or recovery, sees them on
        `message.cursor` / `message.progress`. False if the claim was lost; Cancelled as `extend`.
        """
        if not isinstance(cursor, str) or len(cursor) > 16_000:
            raise ValueError("cursor must be a string of at most 16000 characters")
        if progress is not None and not (isinstance(progress, (int, float)) and math.isfinite(progress)):
            raise ValueError(f"progress must be a finite number, got {progress!r}")
        args = (cursor, None if progress is None else float(progress), delay_us(lease, None))
        with settled_if_cancelled(message):
            return self._settle(receipt_of(message), protocol.checkpoint, *args, finishing=False)

    # -- in the caller's transaction (`connection=`) ------------------------------------------

    def _ack_on(self, held: Borrowed, message: Claimable) -> bool:
        r = self._settling(message)
        handle = message._handle if isinstance(message, Message) else None
        _, _, ckey = self._known_of(message, r)
        try:
            cur = held.raw.cursor()
            try:
                table = self._recording(r.queue)
                if table is not None:  # the copy, in the caller's transaction like the DELETE
                    copy = self._sql.in_list(self._sql.history_acked, 1, "(%s,%s,%s,%s,%s,%s,%s)")
                    cur.execute(copy, (ending.worker_label(), table, *r.fence()))
                done = protocol.ack(cur, self._sql, r)
            finally:
                cur.close()
        except held.driver.Error as exc:
            if handle is not None:
                handle.finished = False  # still ours: the claim block records the failure as usual
            raise held.translate(exc, self.settings) from exc
        # Either way the claim is out of this process's hands: deleted (pending the caller's
        # commit), or lost. Should the caller roll back, the row stays owned by the claim session;
        # it comes back when that session ends (or its lease, without the PROCESS privilege).
        self._sessions.settled(r.owner, r.id)
        if not done:
            raise NotClaimed(
                f"message {r.id}: the claim was lost (recovered after its lease or owner died); "
                "roll back: the message will be delivered again"
            )
        if handle is not None:
            handle.in_transaction = True

        def committed() -> None:
            # Counted once the caller commits where the framework says so (Django, SQLAlchemy
            # Session); on a plain connection nobody can tell, so at once: a rolled-back
            # acknowledgement is then counted, and counted again when the message is done.
            self._counters.add(r.queue, processed=1)
            if ckey is not None:
                self._promote(ckey)  # its slot is free once the DELETE is committed

        if held.autocommit() or not held.after_commit(committed):
            committed()
        return True

    def _nack_if_rolled_back(self, message: Message, error: BaseException) -> bool:
        """A claim block acknowledged in the caller's transaction and then raised: if that
        transaction rolled back (the claim is still held), record the failure like any raise.

        A locking read that skips locked rows tells the cases apart without waiting: the row is
        gone (committed), locked (the caller's transaction is still open around the block: its
        outcome decides), or present and free (rolled back).
        """
        r = message.receipt

        def attempt() -> bool:
            with self._pool.connection() as conn:
                cur = conn.cursor()
                try:
                    cur.execute(self._sql.held_unlocked, r.fence())
                    return cur.fetchone() is not None
                finally:
                    cur.close()

        if not retry.call(self._policy, attempt):
            return False
        message._handle.finished = False
        if isinstance(error, Exception):
            return self.nack(message, error)
        return self.release(message)

    # -- helpers -------------------------------------------------------------------------------

    def _settling(self, message: Claimable) -> Receipt:
        handle = message._handle if isinstance(message, Message) else None
        if handle is not None:
            if handle.cancelled:
                raise Cancelled(f"message {message.id} was cancelled: it has ended, not to be retried")  # type: ignore[union-attr]
            if handle.finished:
                raise NotClaimed(f"message {message.id} was already settled")  # type: ignore[union-attr]
            handle.finished = True
        return receipt_of(message)

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
            if not done and step in ending.SPARING_CANCELLING and self._end_cancelled(r):
                self._settled(r, True, key=key)
                if not finishing:  # extend, checkpoint: the handler learns it here
                    raise Cancelled(f"message {r.id} was cancelled: it has ended, not to be retried")
                return True  # released, retried or failed: it ends cancelled instead
        except BaseException:
            if finishing:
                self._sessions.settled(r.owner, r.id)
            raise
        return self._settled(r, done, finishing=finishing, key=key)

    def _end_cancelled(self, r: Receipt) -> bool:
        """A fenced statement matched nothing: if the claim is cancelling, end it (deleted, and
        recorded 'cancelled'); False if the claim was simply lost."""
        table = self._recording(r.queue)

        def attempt() -> bool:
            with self._pool.connection() as conn:
                cur = conn.cursor()
                try:
                    return ending.is_cancelling(cur, self._sql, r) and ending.finish_cancelled(cur, self._sql, r, table)
                finally:
                    cur.close()

        ended = retry.call(self._policy, attempt)
        if ended:
            log.info("message %s of queue %r: cancelled while its handler ran; ended", r.id, r.queue)
        return ended

    def _settled(self, r: Receipt, done: bool, *, finishing: bool = True, key: str | None = None) -> bool:
        if finishing:
            self._sessions.settled(r.owner, r.id)
        if not done:
            log.warning("message %s: claim gone (recovered elsewhere); it will be delivered again", r.id)
        elif key is not None:
            self._promote(key)  # its slot is free: the next message of the key may run
        return done

    def _delete_ack_groups(self, groups: list[list[Receipt]]) -> list[list[bool]]:
        """The acknowledgements gathered by `_acks` (single ones and batches): one DELETE for all."""
        flat = [r for group in groups for r in group]
        done = iter(self._delete_acked(flat))
        return [[next(done) for _ in group] for group in groups]

    def _delete_acked(self, receipts: list[Receipt]) -> list[bool]:
        """One fenced DELETE for a group of acknowledgements; whether each was still held."""

        recorded = any(self._history.on(q) for q in {r.queue for r in receipts})

        def attempt() -> set[int]:
            with self._pool.connection() as conn:
                cur = conn.cursor()
                try:
                    if recorded:
                        return ending.ack_many(cur, self._sql, receipts, self.table)
                    return protocol.ack_many(cur, self._sql, receipts)
                finally:
                    cur.close()

        deleted = retry.call(self._policy, attempt)
        return [r.id in deleted for r in receipts]

    def _give_back(self, messages: list[Message]) -> None:
        """Release claimed messages nobody took (their caller left), at once, no attempt counted."""
        for m in messages:
            try:
                self._settle(m.receipt, protocol.release, 0, key=m.concurrency_key)
            except Exception as exc:  # the claim stays; it comes back by recovery once its lease ends
                log.warning("message %s: could not give back an unwanted claim: %s", m.id, exc)

def receipt_of(message: Claimable) -> Receipt:
    """The claim receipt of a Message, a Receipt, or a receipt's text form."""
    if isinstance(message, Message):
        return message.receipt
    if isinstance(message, Receipt):
        return message
    if isinstance(message, str):
        return Receipt.parse(message)
    raise TypeError(f"expected a Message, Receipt or receipt string, not {type(message).__name__}")
