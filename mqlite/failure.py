"""What a failed attempt leaves behind: the error text kept on the row, and when to try again."""

from __future__ import annotations

import random
import traceback
from dataclasses import dataclass

ERROR_LIMIT = 16_000  # characters of error text kept (the column is a TEXT of 64 KiB)


@dataclass(frozen=True)
class Backoff:
    """Delay before attempt n+1 after n failures: `base * factor**(n-1)`, at most `cap`, with jitter.

    `jitter=0.2` spreads each delay uniformly over ±20%, so messages that failed together
    (a database outage, a bad deploy) do not all come back in the same instant.
    """

    base: float = 1.0
    factor: float = 2.0
    cap: float = 300.0
    jitter: float = 0.2

    def delay(self, failures: int) -> float:
        raw = min(self.cap, self.base * self.factor ** max(0, failures - 1))
        return max(0.0, raw * random.uniform(1 - self.jitter, 1 + self.jitter))


def describe(error: str | BaseException | None) -> str:
    """The text stored as `last_error`: `Class: message`, then the traceback's tail."""
    if error is None:
        text = "failed"
    elif isinstance(error, BaseException):
        head = f"{type(error).__name__}: {error}"
        tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        text = head if not error.__traceback__ else f"{head}\n\n{tb}"
    else:
        text = str(error)
    if len(text) > ERROR_LIMIT:
        # Keep the head (class and message) and the innermost frames, which say where it broke.
        text = text[:2000] + "\n…\n" + text[-(ERROR_LIMIT - 2100):]
    return text
