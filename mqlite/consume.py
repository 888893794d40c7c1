"""Taking messages out: `pop`/`pop_many` (at-most-once), `claim`/`take`/`take_many`
(at-least-once), and the recovery of orphaned claims that consumers run as they go."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from . import recovery, retry, sql
from .claimer import MAX_BATCH, Claimer
from .config import MAX_DELAY, check_queue
from .ending import worker_label
from .errors import DatabaseError, MqliteError
from .levels import Levels
from .message import Message
from .settle import Held, Settling

log = logging.getLogger("mqlite")

_LEVELS_KEPT = 4096  # queues whose known priorities are kept
_RETIRE_ABOVE = 64  # claimers kept per Queue before idle ones are dropped
_ER_DUP_ENTRY = 1062


class Consuming(Settling):
    def pop(self, queue: str) -> Message | None:
        """Take the oldest ready message, deleting it before returning (at-most-once).

        Returns None at once when nothing is ready; never blocks waiting for a message.
        """
        got = self._take(check_queue(queue), 1, consume=True, lease=30.0)
        return got[0] if got else None

    def pop_many(self, queue: str, n: int) -> list[Message]:
        """Take and delete up to `n` of the oldest ready messages (at-most-once); empty if none."""
        return self._take(check_queue(queue), check_batch(n), consume=True, lease=30.0)

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
        handle: Held = message._handle
        try:
            yield message
        except BaseException as exc:
            if not handle.finished:
                if isinstance(exc, Exception):
                    self.nack(message, exc)
                else:  # interrupted (KeyboardInterrupt, SystemExit): not the message's fault
                    self.release(message)
            elif handle.in_transaction:  # acknowledged in the caller's transaction, maybe rolled back
                self._nack_if_rolled_back(message, exc)
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
        got = self.take_many(queue, 1, lease=lease, interrupt=interrupt)
        return got[0] if got else None

    def take_many(
        self, queue: str, n: int, *, lease: float = 30.0, interrupt: threading.Event | None = None
    ) -> list[Message]:
        """Claim up to `n` of the oldest ready messages (at-least-once), each settled as `take`'s are.

        One claim statement serves this call and any others waiting at the same time; empty if
        nothing is ready.
        """
        if not (isinstance(lease, (int, float)) and 0 < lease <= MAX_DELAY):
            raise ValueError("lease must be a positive number of seconds")
        got = self._take(check_queue(queue), check_batch(n), consume=False, lease=float(lease))
        return [replace(m, _handle=Held(self, float(lease), interrupt)) for m in got]

    def _take(self, queue: str, n: int, *, consume: bool, lease: float) -> list[Message]:
        claimer = self._claimer(queue, consume=consume, lease=lease)
        started = time.monotonic()
        got = retry.call(self._policy, lambda: claimer.take(queue, n))
        if self._maybe_recover(found_empty=not got) and not got:
            # What recovery just put back; within the same retry bound as the first claim.
            got = retry.call(self._policy, lambda: claimer.take(queue, n), started=started)
        return got

    # -- claimers, one per mode (pop, or claim with a lease) for every queue, made on first use ----

    def _claimer(self, queue: str, *, consume: bool, lease: float) -> Claimer:
        key = (consume, lease)
        claimer = self._claimers.get(key)
        if claimer is None:
            with self._claimers_lock:
                claimer = self._claimers.get(key)
                if claimer is None:
                    if len(self._claimers) >= _RETIRE_ABOVE:
                        self._retire_claimers()
                    claimer = Claimer(
                        self._sessions, self._sql, consume=consume, lease=lease, give_back=self._give_back,
                        on_consumed=self._count_popped if consume else None, levels=self._levels_of,
                        history=self._pop_history if consume else None,
                    )
                    self._claimers[key] = claimer
        return claimer

    def _levels_of(self, queue: str) -> Levels:
        """The known priorities of `queue` (kept per queue name; a process touching many names keeps
        a small tuple for each)."""
        levels: Levels | None = self._levels.get(queue)
        if levels is None:
            if len(self._levels) >= _LEVELS_KEPT:
                self._levels.clear()  # read again on next use: a process may touch endless names
            levels = Levels(functools.partial(self._read_levels, queue))
            self._levels[queue] = levels
        return levels

    def _read_levels(self, queue: str, limit: int) -> list[int]:
        """The priorities in `queue`, on a pool connection (the claim's retry covers it)."""
        with self._pool.connection() as conn:
            cur = conn.cursor()
            try:
                cur.execute(self._sql.levels, (queue, limit))
                return [int(r[0]) for r in cur.fetchall()]
            finally:
                cur.close()

    def _count_popped(self, queue: str, n: int) -> None:
        self._counters.add(queue, processed=n)

    def _retire_claimers(self) -> None:
        """Forget claimers unused for a while (holding the lock): a process may use many leases."""
        cutoff = time.monotonic() - self._sessions.idle_timeout
        for key, claimer in list(self._claimers.items()):
            if claimer.idle and claimer.last_used < cutoff:
                del self._claimers[key]

    def _close_claimers(self) -> None:
        with self._claimers_lock:
            claimers, self._claimers = list(self._claimers.values()), {}
        unreturned = [m for claimer in claimers for m in claimer.close()]
        if unreturned:
            # Consumed for a pop whose caller gave up before taking it: put it back, same id.
            self._restore(unreturned)
        self._sessions.close()

    def give_back(self, messages: Iterable[Message]) -> None:
        """Put back messages taken for a caller that never received them (it was cancelled, or left).

        Claimed ones (`take`) are released at once (ready now, behind what is waiting; no attempt
        counted); popped ones (`pop`), already deleted, go back into the table with their id, place
        in line and attempts. For layers that
        take on a caller's behalf (asyncio, HTTP). A message that cannot be put back is logged: a
        claimed one then returns by recovery, a popped one is lost (pop is at-most-once).
        """
        popped = []
        for m in messages:
            if m._handle is None:
                popped.append(m)
                continue
            try:
                self.release(m)
            except MqliteError as exc:
                log.warning("message %s: could not give back an unwanted claim: %s", m.id, exc)
        if popped:
            try:
                self._restore(popped)
            except MqliteError as exc:
                log.error("could not put back popped messages %s: %s", [m.id for m in popped], exc)

    def _restore(self, messages: list[Message]) -> None:
        """Insert popped messages again, same id; a retry skips the rows its first try committed."""
        for m in messages:
            tries = 0

            def attempt(m: Message = m) -> None:
                nonlocal tries
                tries += 1
                with self._pool.connection() as conn:
                    cur = conn.cursor()
                    try:
                        cur.execute(self._sql.restore, (m.id, m.queue, m.body, m.created_at, m.available_at,
                                                        m.attempts, m.max_attempts, m.unique_key, m.concurrency_key,
                                                        m.priority))
                        table = self._recording(m.queue)
                        if table is not None and m.claimed_at is not None:  # it did not end after all
                            cur.execute(self._sql.in_list(sql.UNRECORD_POPPED, 1), (table, m.queue, m.claimed_at, m.id))
                    finally:
                        cur.close()

            try:
                retry.call(self._policy, attempt)
            except DatabaseError as exc:
                if exc.code != _ER_DUP_ENTRY or tries == 1:
                    raise

    # -- recovery ---------------------------------------------------------------------------------

    def recover(self) -> recovery.Recovery:
        """Put back claims whose owner is gone: dead session, claimed before the server restarted,
        or (without the PROCESS privilege) lease expired."""
        return self._recover(self._policy)

    def _recover(self, policy: retry.Policy | None) -> recovery.Recovery:
        # Any queue keeping history: the claims given up are recorded (the join picks the queues).
        history = (self.table, worker_label()) if self._history.all() else None

        def attempt() -> recovery.Recovery:
            with self._pool.connection() as conn:
                return recovery.recover(conn, self._sql, self.max_attempts, history)

        report = retry.call(policy, attempt)
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
            # Tried once: a consumer's call does not wait out retries of housekeeping (the next
            # pass comes soon), so it stays within its own retry bound.
            back = self._recover(None).total
            self.prune_history()  # type: ignore[attr-defined]  # history.Recording, in Queue
            return back
        except Exception as exc:  # a consumer must not fail because housekeeping did
            log.warning("opportunistic recovery failed: %s", exc)
            return 0
        finally:
            self._recover_lock.release()


def check_batch(n: int) -> int:
    """`n` if it is a number of messages one call may take, else ValueError."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_BATCH:
        raise ValueError(f"n must be a whole number from 1 to {MAX_BATCH}")
    return n
