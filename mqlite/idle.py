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
        self.bell = bell  # both may be set later (a consumer whose queues change)
        self.queues = tuple(queues)
        # The wake-up generation this consumer has acted on: one that happened since (even while
        # it was polling) ends the next sleep at once, so a push between poll and wait is not missed.
        self._seen = bell.generation if bell is not None else 0
        self._poked = False  # `interrupt` was called: the next (or current) sleep ends at once
        self._token: int | None = None  # this consumer's subscription while it sleeps on the bell

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
        if self.bell is not None and self.queues:
            return self._sleep_on_bell(seconds, wake)
        if wake is not None:
            return wake.wait(seconds)
        if seconds > 0:
            time.sleep(seconds)
        return False

    def interrupt(self) -> None:
        """End this consumer's bell-backed sleep now (or the next one, if it is not asleep): a
        `wake` event cannot end that sleep by itself, so whoever sets one calls this too."""
        self._poked = True
        token = self._token
        if token is not None and self.bell is not None:
            self.bell.poke(token)

    def _sleep_on_bell(self, seconds: float, wake: threading.Event | None) -> bool:
        assert self.bell is not None
        seen = self._seen
        if not (self._poked or (wake is not None and wake.is_set())):
            token = self.bell.subscribe(self.queues, seen)
            if token is not None:
                self._token = token
                try:
                    if self._poked:  # interrupted between the check above and the subscription
                        self.bell.poke(token)
                    self.bell.wait_subscribed(token, seconds)
                finally:
                    self._token = None
                    self.bell.unsubscribe(token)
        poked, self._poked = self._poked, False
        self._seen = self.bell.generation
        return poked or self._seen != seen or (wake is not None and wake.is_set())
