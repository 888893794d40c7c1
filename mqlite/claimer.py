"""`Claimer`: the claimed messages of one queue for the threads of one process.

Per process and queue, one claim statement runs at a time (a `Coalescer`), claiming a row for
every caller waiting, on one of the Queue's shared claim sessions (`ClaimSessions`). A claim asks
only for rows that callers will take: nothing is claimed for nobody.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from . import protocol
from .coalesce import Coalescer
from .levels import Levels
from .message import Message
from .sessions import ClaimSessions
from .sql import Statements

MAX_BATCH = 1000  # rows one claim statement may ask for (one caller may want this many)


class Claimer:
    """Hands out claimed messages of `queue`.

    `consume=True` (pop): rows are deleted before they are handed out.
    `consume=False` (claim): rows stay claimed until acknowledged or released, from any connection.
    `give_back(messages)` puts back claimed rows whose caller left before taking them.
    """

    def __init__(
        self,
        sessions: ClaimSessions,
        st: Statements,
        queue: str,
        *,
        consume: bool,
        lease: float = 30.0,
        give_back: Callable[[list[Message]], None],
        levels: Levels | None = None,
        on_consumed: Callable[[int], None] | None = None,
        gather_limit: int = 64,
        history: Callable[[], tuple[str, str] | None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._st = st
        self.queue = queue
        self.consume = consume
        self.lease_us = int(lease * 1e6)
        self._give_back = give_back
        self._on_consumed = on_consumed
        self._history = history  # pop: (table, worker) while the queue keeps history, else None
        self._lock = threading.Lock()
        self._levels = levels
        # Popped rows whose caller left after they were deleted: served before the next claim.
        self._buffer: deque[Message] = deque()
        self._coalescer: Coalescer[int, list[Message]] = Coalescer(
            self._claim,
            limit=MAX_BATCH,
            size=lambda n: n,
            measure=lambda results: min(gather_limit, sum(len(r) for r in results)),
            abandoned=self._abandoned,
        )

    @property
    def idle(self) -> bool:
        """Nothing waiting, nothing running, nothing buffered."""
        return self._coalescer.idle and not self._buffer

    @property
    def last_used(self) -> float:
        return self._coalescer.last_used

    def take(self, n: int = 1) -> list[Message]:
        """Up to `n` messages, most urgent priority first, then oldest; empty when the queue has nothing ready."""
        if self._buffer:
            with self._lock:
                got = [self._buffer.popleft() for _ in range(min(n, len(self._buffer)))]
            if got:
                return got
        return self._coalescer.submit(n)

    def close(self) -> list[Message]:
        """Popped messages never handed out (normally none), for the caller to restore."""
        with self._lock:
            left, self._buffer = list(self._buffer), deque()
        return left

    def _claim(self, wants: list[int]) -> list[list[Message]]:
        """One claim statement for every caller in the batch; rows handed out in order of arrival."""
        history = self._history() if self.consume and self._history is not None else None
        if self._levels is not None:
            self._levels.current()  # a stale list is read anew before a claim session is held
        with self._sessions.hold() as session:
            rows = protocol.fetch(session, self._st, self.queue, sum(wants), self.lease_us, self.consume, history,
                                  self._levels)
        if self.consume and self._on_consumed is not None and rows:
            self._on_consumed(len(rows))
        results = []
        start = 0
        for want in wants:
            results.append(rows[start:start + want])
            start += want
        return results

    def _abandoned(self, messages: list[Message]) -> None:
        """Messages for a caller who left: popped ones wait for the next caller, claimed ones go back."""
        if not messages:
            return
        if self.consume:
            with self._lock:
                self._buffer.extendleft(reversed(messages))
        else:
            self._give_back(messages)
