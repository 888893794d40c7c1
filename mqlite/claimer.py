"""`Claimer`: the claimed messages of every queue for the threads of one process.

Per process and mode (pop, or claim with a given lease), one claim runs at a time (a
`Coalescer`), claiming a row for every caller waiting, whatever queue each waits on, on one of
the Queue's shared claim sessions (`ClaimSessions`): one queue's callers get the single-queue
claim, several queues' callers one statement for all their heads (`protocol.fetch_many`), so a
process going round a hundred queues costs the server about what one queue does. A claim asks
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
    """Hands out claimed messages of any queue.

    `consume=True` (pop): rows are deleted before they are handed out.
    `consume=False` (claim): rows stay claimed until acknowledged or released, from any connection.
    `give_back(messages)` puts back claimed rows whose caller left before taking them.
    `on_consumed(queue, n)` counts popped rows. `levels(queue)`: the queue's known priorities
    (levels.py). `history(queue)`: for a pop, (table, worker) while the queue keeps history, else None.
    """

    def __init__(
        self,
        sessions: ClaimSessions,
        st: Statements,
        *,
        consume: bool,
        lease: float = 30.0,
        give_back: Callable[[list[Message]], None],
        on_consumed: Callable[[str, int], None] | None = None,
        gather_limit: int = 64,
        levels: Callable[[str], Levels] | None = None,
        history: Callable[[str], tuple[str, str] | None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._st = st
        self.consume = consume
        self.lease_us = int(lease * 1e6)
        self._give_back = give_back
        self._on_consumed = on_consumed
        self._levels = levels
        self._history = history
        self._lock = threading.Lock()
        # Popped rows whose caller left after they were deleted: served before the next claim.
        self._buffers: dict[str, deque[Message]] = {}
        self._coalescer: Coalescer[tuple[str, int], list[Message]] = Coalescer(
            self._claim,
            limit=MAX_BATCH,
            size=lambda want: want[1],
            measure=lambda results: min(gather_limit, sum(len(r) for r in results)),
            abandoned=self._abandoned,
        )

    @property
    def idle(self) -> bool:
        """Nothing waiting, nothing running, nothing buffered."""
        return self._coalescer.idle and not any(self._buffers.values())

    @property
    def last_used(self) -> float:
        return self._coalescer.last_used

    def take(self, queue: str, n: int = 1) -> list[Message]:
        """Up to `n` messages of `queue`, most urgent priority first, then oldest; empty when none is ready."""
        if self._buffers.get(queue):
            with self._lock:
                buffer = self._buffers.get(queue) or deque()
                got = [buffer.popleft() for _ in range(min(n, len(buffer)))]
                if not buffer:
                    self._buffers.pop(queue, None)
            if got:
                return got
        return self._coalescer.submit((queue, n))

    def close(self) -> list[Message]:
        """Popped messages never handed out (normally none), for the caller to restore."""
        with self._lock:
            buffers, self._buffers = self._buffers, {}
        return [m for buffer in buffers.values() for m in buffer]

    def _claim(self, wants: list[tuple[str, int]]) -> list[list[Message]]:
        """One claim for every caller in the batch; each queue's rows handed out in order of arrival."""
        asked: dict[str, int] = {}
        for queue, n in wants:
            asked[queue] = asked.get(queue, 0) + n
        if len(asked) == 1 and self._levels is not None:
            self._levels(wants[0][0]).current()  # a stale list is read anew before a claim session is held
        with self._sessions.hold() as session:
            got = self._fetch(session, asked)
        if self.consume and self._on_consumed is not None:
            for queue, rows in got.items():
                if rows:
                    self._on_consumed(queue, len(rows))
        results = []
        start = dict.fromkeys(asked, 0)
        for queue, want in wants:
            rows, at = got[queue], start[queue]
            results.append(rows[at:at + want])
            start[queue] = at + want
        return results

    def _fetch(self, session: protocol.Session, asked: dict[str, int]) -> dict[str, list[Message]]:
        """One queue: its claim. Several: one statement for their heads, then each queue that came
        back short (or keeps history, for a pop) claimed alone, as it would be by itself."""
        alone = {q for q in asked if self._history_of(q) is not None} if len(asked) > 1 else set(asked)
        together = {q: n for q, n in asked.items() if q not in alone}
        got: dict[str, list[Message]] = {}
        if together:
            levels = {q: self._levels(q).cached() for q in together} if self._levels is not None else None
            got = protocol.fetch_many(session, self._st, together, self.lease_us, self.consume, levels)
        for queue, n in asked.items():
            rows = got.setdefault(queue, [])
            if len(rows) < n:  # none left, a row taken meanwhile, or a priority not known yet
                rows += protocol.fetch(session, self._st, queue, n - len(rows), self.lease_us, self.consume,
                                       self._history_of(queue), None if self._levels is None else self._levels(queue))
        return got

    def _history_of(self, queue: str) -> tuple[str, str] | None:
        return self._history(queue) if self.consume and self._history is not None else None

    def _abandoned(self, messages: list[Message]) -> None:
        """Messages for a caller who left: popped ones wait for the next caller, claimed ones go back."""
        if not messages:
            return
        if self.consume:
            with self._lock:
                self._buffers.setdefault(messages[0].queue, deque()).extendleft(reversed(messages))
        else:
            self._give_back(messages)
