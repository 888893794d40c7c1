"""The priorities in use in each queue, which the claim names (schema/006 says why).

A claim over `priority IN (p1, …, pk)` reads k exact index ranges and never the failed, delayed
or parked rows of a queue. The list comes from a loose index scan (one index dive per priority) on
a pool connection, not the claim session (whose statements keep their claim/read-back rhythm),
re-read at most every `FRESH` seconds, and again when a claim came back short (unless it was read
less than `RECHECK` seconds before): a priority never used before in a queue is served within
`FRESH` seconds while the queue is busy, by the next claim (or the one after) when it is not.
Beyond `MOST` priorities, claims walk the queue's whole index range instead (None).
"""

from __future__ import annotations

import time
from collections.abc import Callable

FRESH = 0.2  # seconds a list of priorities is trusted for
MOST = 64  # priorities a claim names at most
RECHECK = 0.005  # a claim that came back short re-reads the list if it is older than this

Known = tuple[int, ...] | None  # the priorities to claim from; None: too many to name


class Levels:
    """The known priorities of one queue. `read(limit)`: its priorities, in order, up to `limit`."""

    def __init__(self, read: Callable[[int], list[int]]) -> None:
        self._read = read
        self._known: Known = (0,)
        self._at = -1e9  # monotonic time of the last read

    def current(self) -> Known:
        """The priorities to claim from, read anew when stale."""
        if time.monotonic() - self._at < FRESH:
            return self._known
        return self.read()

    def recheck(self, used: Known) -> Known:
        """After a claim over `used` came back short: the priorities read anew when that may find
        others, else None (nothing more to claim)."""
        if used is None or time.monotonic() - self._at < RECHECK:
            return None
        found = self.read()
        return found if found != used else None

    def read(self) -> Known:
        found: Known = tuple(self._read(MOST + 1)) or (0,)
        if found is not None and len(found) > MOST:
            found = None
        self._known, self._at = found, time.monotonic()
        return found
