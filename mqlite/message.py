"""The message a consumer receives, and body conversion."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Union

from .errors import InvalidBody

Body = Union[bytes, bytearray, memoryview, str]


@dataclass(frozen=True)
class Message:
    """One message taken from a queue. `body` is always bytes; `text()` decodes it."""

    id: int
    queue: str
    body: bytes
    created_at: datetime
    # Who holds the claim: the session id and the server time of the claim. Together they fence
    # ack and release, so a claim that was recovered and taken by someone else is left alone.
    owner: int = field(default=0, repr=False, compare=False)
    claimed_at: datetime | None = field(default=None, repr=False, compare=False)

    def text(self, encoding: str = "utf-8") -> str:
        """The body decoded as text."""
        return self.body.decode(encoding)

    @classmethod
    def from_row(cls, row: tuple) -> Message:
        """Build from a row of `sql.MESSAGE_COLUMNS`."""
        id_, queue, body, created_at, owner, claimed_at = row
        return cls(int(id_), queue, bytes(body), created_at, int(owner), claimed_at)


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
