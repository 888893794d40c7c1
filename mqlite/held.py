"""`Held`: what a message taken by `claim`/`take` knows about its claim, so that `message.ack()`,
`touch()`, `checkpoint()`… reach the Queue that holds it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .errors import Cancelled, Interrupted, NotClaimed
from .message import Message

if TYPE_CHECKING:
    from .settle import Settling


class Held:
    """A claim's owner (the Queue), lease and interrupt event, and whether it is settled.

    `touch`/`extend`/`checkpoint` raise Cancelled once the message was cancelled (the Queue has
    then ended it and marked this handle finished), NotClaimed once the claim was lost."""

    def __init__(self, owner: Settling, lease: float, interrupt: threading.Event | None) -> None:
        self.owner = owner
        self.lease = lease
        self.interrupt = interrupt
        self.finished = False
        self.cancelled = False  # ended by a cancel: every later check-in of the handler raises Cancelled
        # Check-ins of one message one at a time (the handler's, a Worker heartbeat's): the second
        # then sees the first's verdict instead of a row already gone.
        self.lock = threading.Lock()
        self.in_transaction = False  # acknowledged inside a caller's transaction (ack(connection=…))

    def touch(self, m: Message) -> None:
        self.extend(m, self.lease)

    def extend(self, m: Message, seconds: float) -> None:
        self._check_cancelled(m)
        if not self.owner.extend(m, seconds):  # Cancelled: ended, and marked finished there
            raise NotClaimed(f"message {m.id}: the claim was lost (recovered after its lease or owner died)")

    def fail(self, m: Message, reason: str | BaseException) -> None:
        self.owner.fail(m, reason)

    def release(self, m: Message, delay: float) -> None:
        self.owner.release(m, delay)

    def ack(self, m: Message, connection: Any = None) -> bool:
        return self.owner.ack(m, connection=connection)

    def checkpoint(self, m: Message, cursor: str, progress: float | None) -> None:
        self._check_cancelled(m)
        if not self.owner.checkpoint(m, cursor, progress, lease=self.lease):
            raise NotClaimed(f"message {m.id}: the claim was lost (recovered after its lease or owner died)")
        if self.interrupt is not None and self.interrupt.is_set():
            raise Interrupted(f"message {m.id}: stopping at cursor {cursor!r}")

    def _check_cancelled(self, m: Message) -> None:
        # The message ended cancelled when something else renewed its lease first (a Worker's
        # heartbeat, a broker's lease keeper): the handler learns it at its own next check-in.
        if self.cancelled:
            raise Cancelled(f"message {m.id} was cancelled: it has ended, not to be retried")


@contextmanager
def settled_if_cancelled(message: Any) -> Iterator[None]:
    """Around a check-in (extend, checkpoint) of `message`: one at a time per message; raises
    Cancelled if an earlier one ended it cancelled, and marks the handle settled when this one does."""
    handle = message._handle if isinstance(message, Message) else None
    if handle is None:
        yield
        return
    with handle.lock:
        if handle.cancelled:
            raise Cancelled(f"message {message.id} was cancelled: it has ended, not to be retried")
        try:
            yield
        except Cancelled:
            handle.finished = handle.cancelled = True  # its claim block has nothing left to settle
            raise
