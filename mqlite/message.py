"""The message a consumer receives, its claim receipt, and body conversion."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Union

from .errors import InvalidBody, NotClaimed

Body = Union[bytes, bytearray, memoryview, str]
_STAMP = "%Y%m%d%H%M%S%f"


@dataclass(frozen=True)
class Receipt:
    """Names one claim of one message: what ack, release, fail and extend need to find it.

    Its text form (`str(receipt)`) is opaque and safe to hand to another process or over HTTP.
    """

    queue: str
    available_at: datetime
    id: int
    owner: int
    node: int
    claimed_at: datetime
    priority: int = 0

    def fence(self) -> tuple[str, int, datetime, int, int, int, datetime]:
        """The values of the claim fence in `sql.Statements`."""
        return (self.queue, self.priority, self.available_at, self.id, self.owner, self.node, self.claimed_at)

    def __str__(self) -> str:
        # The priority follows the available time as a signed number, left out when 0: the text of
        # receipts from before priorities existed reads the same.
        rank = f"{self.priority:+d}" if self.priority else ""
        return (f"{self.id}.{self.owner}.{self.node}.{self.claimed_at:{_STAMP}}.{self.available_at:{_STAMP}}"
                f"{rank}.{self.queue}")

    @classmethod
    def parse(cls, text: str) -> Receipt:
        """Read a receipt's text form; NotClaimed when it is not one."""
        try:
            id_, owner, node, claimed, available, queue = text.split(".", 5)
            stamp, sign, rank = available[:20], available[20:21], available[21:]
            if sign and (sign not in "+-" or not rank.isdigit()):
                raise ValueError(available)
            return cls(queue, datetime.strptime(stamp, _STAMP), int(id_), int(owner), int(node),
                       datetime.strptime(claimed, _STAMP), int(sign + rank) if sign else 0)
        except (ValueError, AttributeError):
            raise NotClaimed(f"not a claim receipt: {str(text)[:80]!r}") from None


@dataclass(frozen=True)
class Message:
    """One message taken from a queue. `body` is always bytes; `text()` decodes it.

    Taken with `Queue.claim`/`take`, `touch()`/`extend()` lengthen the lease, and `ack()`,
    `fail(reason)` or `release(delay=…)` settle it (inside a `claim` block, instead of the
    block's own acknowledgement at exit).
    """

    id: int
    queue: str
    body: bytes
    created_at: datetime
    attempts: int = 0
    available_at: datetime | None = None
    last_error: str | None = None
    failed_at: datetime | None = None
    unique_key: str | None = None
    max_attempts: int | None = None
    cursor: str | None = None  # what the last `checkpoint()` saved: where to resume
    progress: float | None = None
    concurrency_key: str | None = None
    priority: int = 0  # lower runs first
    # Who holds the claim: the session id and the server time of the claim.
    owner: int = field(default=0, repr=False, compare=False)
    owner_node: int = field(default=0, repr=False, compare=False)
    claimed_at: datetime | None = field(default=None, repr=False, compare=False)
    lease_until: datetime | None = field(default=None, repr=False, compare=False)
    _handle: Any = field(default=None, repr=False, compare=False)

    def text(self, encoding: str = "utf-8") -> str:
        """The body decoded as text."""
        return self.body.decode(encoding)

    @property
    def receipt(self) -> Receipt:
        """The claim's receipt (NotClaimed if this message is not claimed)."""
        if not self.owner or self.claimed_at is None or self.available_at is None:
            raise NotClaimed(f"message {self.id} is not claimed")
        return Receipt(self.queue, self.available_at, self.id, self.owner, self.owner_node, self.claimed_at,
                       self.priority)

    def ack(self, *, connection: Any = None) -> bool:
        """Acknowledge a message taken with `take`/`claim`: deleted, done. False if the claim was lost.

        With `connection`, in the caller's transaction (`Queue.ack`); a lost claim raises NotClaimed.
        """
        return bool(self._held().ack(self, connection))

    def touch(self) -> None:
        """Renew the lease for as long as the claim first asked for."""
        self._held().touch(self)

    def extend(self, seconds: float) -> None:
        """Make the lease run until `seconds` from now."""
        self._held().extend(self, seconds)

    def fail(self, reason: str | BaseException) -> None:
        """Give up on this message: it becomes failed at once, with `reason` as its error."""
        self._held().fail(self, reason)

    def release(self, delay: float = 0.0) -> None:
        """Put the message back, available after `delay` seconds, without counting an attempt."""
        self._held().release(self, delay)

    def checkpoint(self, cursor: str, progress: float | None = None) -> None:
        """Save where a long handler has got to (and renew the lease).

        If the message comes back (worker stopped, crashed, or the attempt failed), the next
        consumer finds `cursor` and `progress` on it and resumes from there. When the Worker
        running this handler is stopping, raises `mqlite.errors.Interrupted` after saving: the
        message is released at once, without counting an attempt.
        """
        self._held().checkpoint(self, cursor, progress)

    def _held(self) -> Any:
        if self._handle is None:
            raise NotClaimed(f"message {self.id} was not taken with claim(); use the Queue's methods")
        return self._handle

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Message:
        """Build from a row of `sql.MESSAGE_COLUMNS`."""
        (id_, queue, body, created_at, owner, node, claimed_at, available_at, lease_until,
         attempts, max_attempts, unique_key, failed_at, last_error, cursor, progress, key, priority) = row
        return cls(
            int(id_), queue, bytes(body), created_at, int(attempts), available_at, last_error, failed_at,
            unique_key, max_attempts, cursor, progress, key, int(priority), int(owner), int(node), claimed_at,
            lease_until,
        )


def as_bytes(body: object) -> bytes:
    """The bytes to store for `body`: bytes-like as is, str as UTF-8; anything else is a TypeError."""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        try:
            return body.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidBody(f"body is not encodable as UTF-8: {exc.reason} at {exc.start}") from None
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    raise TypeError(f"body must be bytes, bytearray, memoryview or str, not {type(body).__name__}")
