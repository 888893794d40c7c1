"""`IdleWait`: how long a consumer waits before polling an empty queue again.

The first wait is `first` seconds, each empty poll doubles it up to `cap`, and a message found
resets it: an idle consumer costs a few statements a second, and a busy one looks again at once.
Used by the Worker, the Dramatiq broker, the kombu transport and the web long-poll.

`sleep(seconds, wake)` is the one place a consumer sleeps: a subclass can end it early on a
signal of its own without touching the backoff. Given a `bell` (`Queue.doorbell`, see
mqlite/wake.py) and the `queues` it waits on, the sleep also ends when a message there becomes
due, pushed by any process: wake-ups in milliseconds, while the backoff still bounds how long a
consumer trusts the bell (a lost signal costs at most the pause, never a message).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .wake import Doorbell


class IdleWait:
    """The backoff between polls of an empty queue. Not thread-safe: one per consuming loop."""

    def __init__(self, first: float, cap: float, *, bell: Doorbell | None = None,
                 queues: Sequence[str] = ()) -> None:
        if first < 0 or cap < 0:
            raise ValueError("idle waits must be non-negative")
        self.first = first
        self.cap = cap
        self._next = min(first, cap)
        self.bell = bell if queues else None
        self.queues = tuple(queues)
        # The wake-up generation this consumer has acted on: one that happened since (even while
        # it was polling) ends the next sleep at once, so a push between poll and wait is not missed.
        self._seen = bell.generation if bell is not None else 0

    def reset(self) -> None:
        """A message was found: the next empty poll waits `first` again."""
        self._next = min(self.first, self.cap)

    def pause(self, limit: float | None = None) -> float:
        """The wait owed after this empty poll (at most `limit`); the one after it is twice as long."""
        pause = self._next
        self._next = min(self._next * 2, self.cap)
        return pause if limit is None else max(0.0, min(pause, limit))

    def wait(self, wake: threading.Event | None = None, *, limit: float | None = None) -> bool:
        """After an empty poll: sleep the pause owed (at most `limit`), or until `wake` is set.

        Returns True when woken (`wake` set), False when the pause ran out.
        """
        return self.sleep(self.pause(limit), wake)

    def sleep(self, seconds: float, wake: threading.Event | None = None) -> bool:
        """Sleep `seconds`, ended early when `wake` is set (or the bell rings); True when woken."""
        if self.bell is not None:
            if wake is not None and wake.is_set():
                return True
            # `wake` cannot end this wait: its setter calls `interrupt` (Worker does on stop).
            seen, self._seen = self._seen, self.bell.wait(self.queues, self._seen, seconds)
            return self._seen != seen or (wake is not None and wake.is_set())
        if wake is not None:
            return wake.wait(seconds)
        if seconds > 0:
            time.sleep(seconds)
        return False

    def interrupt(self) -> None:
        """End the bell-backed sleep in progress, if any (e.g. the consumer is stopping)."""
        if self.bell is not None:
            self.bell.interrupt_waiters()
