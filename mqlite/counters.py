"""Processed and failed totals per queue, kept in the database (`mqlite_queues`).

Increments are gathered in memory and written at most once a second (and on `Queue.close()` and
`Queue.stats()`), so acknowledging a message never pays a write to one hot counter row shared by
every consumer. The price: a process killed with SIGKILL loses up to a second of counts, never
a message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("mqlite")


class Counters:
    def __init__(self, write: Callable[[dict[str, list[int]]], None], every: float = 1.0) -> None:
        self._write = write
        self._every = every
        self._lock = threading.Lock()
        self._pending: dict[str, list[int]] = {}
        self._last = time.monotonic()

    def add(self, queue: str, *, processed: int = 0, failed: int = 0) -> None:
        with self._lock:
            counts = self._pending.setdefault(queue, [0, 0])
            counts[0] += processed
            counts[1] += failed
            due = time.monotonic() - self._last >= self._every
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            self._last = time.monotonic()
        if not pending:
            return
        try:
            self._write(pending)
        except Exception as exc:  # counting must never fail an acknowledgement; try again later
            log.warning("could not write queue counters (will retry): %s", exc)
            with self._lock:
                for queue, (processed, failed) in pending.items():
                    counts = self._pending.setdefault(queue, [0, 0])
                    counts[0] += processed
                    counts[1] += failed
