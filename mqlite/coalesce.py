"""One statement in flight; whoever arrives meanwhile goes into the next one (a group commit).

Claims and acknowledgements both work this way. With many threads claiming `LIMIT 1` from the head
of one queue, every session waits on the same first row and each commit wakes them all; the naive
pop collapses at a few dozen clients. A statement costs about the same for 60 rows as for one, so
one statement for every caller waiting is both faster and gentler on the server.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

GATHER = 0.002  # seconds at most a leader waits for as many callers as its previous batch had
WAIT_SLICE = 1.0  # seconds a waiting caller sleeps before looking again

_PENDING, _RUNNING, _DONE = 0, 1, 2


class _Member(Generic[T, R]):
    __slots__ = ("item", "size", "state", "result", "error", "abandoned")

    def __init__(self, item: T, size: int) -> None:
        self.item = item
        self.size = size
        self.state = _PENDING
        self.result: R | None = None
        self.error: BaseException | None = None
        self.abandoned = False


class Coalescer(Generic[T, R]):
    """Runs `run(items) -> results` (one result per item, in order) with at most one call in flight.

    The caller that finds nothing running leads: it waits up to `gather` seconds for as many
    callers as the previous batch served (free when they are there already, so a lone caller
    never waits), takes the oldest pending items up to `limit` (by `size`), runs them and hands
    out the results. Callers are served first come, first served.

    A caller interrupted while waiting (KeyboardInterrupt, a timeout exception) leaves the line;
    with `keep_interrupted` its item still goes with the next batch. A result whose caller left
    after its batch started goes to `abandoned`, so nothing handed out is ever lost. `measure`
    turns a batch's results into the group size the next leader gathers for.
    """

    def __init__(
        self,
        run: Callable[[list[T]], list[R]],
        *,
        limit: int,
        size: Callable[[T], int] = lambda item: 1,
        measure: Callable[[list[R]], int] | None = None,
        abandoned: Callable[[R], None] | None = None,
        keep_interrupted: bool = False,
        gather: float = GATHER,
    ) -> None:
        self._run = run
        self._limit = limit
        self._size = size
        self._measure = measure
        self._abandoned = abandoned
        self._keep = keep_interrupted
        self._gather_for = gather
        lock = threading.Lock()
        self._cond = threading.Condition(lock)
        self._arrived = threading.Condition(lock)  # wakes only a gathering leader
        self._pending: deque[_Member[T, R]] = deque()
        self._queued = 0  # total size of the pending items
        self._busy = False
        self._target = 0  # what a gathering leader waits for (0: nobody gathering)
        self.last = 1  # group size of the previous batch
        self.last_used = time.monotonic()

    @property
    def idle(self) -> bool:
        """Nothing pending and nothing running."""
        return not self._busy and not self._pending

    def submit(self, item: T) -> R:
        """Run `item` in the next batch and return its result (or raise the batch's error)."""
        me: _Member[T, R] = _Member(item, self._size(item))
        with self._cond:
            self._pending.append(me)
            self._queued += me.size
            if self._target and self._queued >= self._target:
                self._arrived.notify()
        while True:
            try:
                with self._cond:
                    while me.state != _DONE and self._busy:
                        self._cond.wait(WAIT_SLICE)
                    if me.state == _DONE:
                        return self._outcome(me)
                    self._busy = True
                    try:
                        self._gather()
                    except BaseException:
                        self._busy = False  # someone else must be able to lead
                        self._cond.notify_all()
                        raise
                    batch = self._next_batch()
                self._lead(batch)
            except BaseException:
                with self._cond:
                    gone = self._leave(me)
                if gone is not None:
                    self._give_up(gone)
                raise

    # -- the leader ------------------------------------------------------------------------------

    def _gather(self) -> None:
        """Wait (holding the lock) until as many are queued as the last batch had, or `gather` passes."""
        target = min(self.last, self._limit)
        if self._queued >= target:
            return
        self._target = target
        deadline = time.monotonic() + self._gather_for
        try:
            while self._queued < target and (left := deadline - time.monotonic()) > 0:
                self._arrived.wait(left)
        finally:
            self._target = 0

    def _next_batch(self) -> list[_Member[T, R]]:
        batch: list[_Member[T, R]] = []
        total = 0
        while self._pending and (not batch or total + self._pending[0].size <= self._limit):
            m = self._pending.popleft()
            m.state = _RUNNING
            total += m.size
            batch.append(m)
        self._queued -= total
        return batch

    def _lead(self, batch: list[_Member[T, R]]) -> None:
        served = 0
        try:
            results = self._run([m.item for m in batch])
        except Exception as exc:
            for m in batch:
                m.error = exc
        except BaseException:
            # Interrupted mid-call: the others go back to the head of the line for a new leader.
            with self._cond:
                for m in reversed([m for m in batch if not m.abandoned]):
                    m.state = _PENDING
                    self._pending.appendleft(m)
                    self._queued += m.size
                self._busy = False
                self._cond.notify_all()
            raise
        else:
            for m, result in zip(batch, results, strict=True):
                m.result = result
            served = self._measure(results) if self._measure is not None else sum(m.size for m in batch)
        with self._cond:
            if served:
                self.last = min(self._limit, served)
            self._busy = False
            self.last_used = time.monotonic()
            for m in batch:
                m.state = _DONE
            left = [m for m in batch if m.abandoned]
            self._cond.notify_all()
        for m in left:
            self._give_up(m)

    # -- callers who leave -------------------------------------------------------------------------

    def _leave(self, me: _Member[T, R]) -> _Member[T, R] | None:
        """`me` stops waiting (holding the lock); returns it if its result is already there."""
        if me.state == _PENDING and not self._keep:
            try:
                self._pending.remove(me)
                self._queued -= me.size
            except ValueError:
                pass
            return None
        me.abandoned = True
        return me if me.state == _DONE else None

    def _give_up(self, m: _Member[T, R]) -> None:
        if m.error is None and m.result is not None and self._abandoned is not None:
            self._abandoned(m.result)

    @staticmethod
    def _outcome(m: _Member[T, R]) -> R:
        if m.error is not None:
            raise m.error
        return m.result  # type: ignore[return-value]
