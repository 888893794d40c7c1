"""The retry policy: which MySQL errors are transient, how often and how long to retry.

What is safe to redo is decided by the callers in queue.py, not here:
- a claim is always safe to redo: rows claimed by a lost connection are orphans and come back by recovery;
- a push redone after a lost connection may insert the message twice (the first INSERT may have
  committed before the connection died): push is at-least-once unless it carries a unique key;
- deadlocks (1213) and lock wait timeouts (1205) roll the statement back, so redoing it is exact.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import MqliteError

if TYPE_CHECKING:
    from tenacity import Retrying

T = TypeVar("T")
log = logging.getLogger("mqlite")

# Server errors after which the same statement may succeed.
LOCK_CONFLICT = frozenset({1205, 1213})  # lock wait timeout, deadlock (also a Galera certification conflict)
# Errors that mean the connection is gone: it must be discarded, never reused.
# 1047: a Galera node that is not (or no longer) part of the primary component refuses statements.
CONNECTION_LOST = frozenset({2006, 2013, 2055, 1927, 1053, 4031, 1047})
# Errors while connecting that may pass (server starting, restarting, or full).
CANNOT_CONNECT = frozenset({2002, 2003, 1040})
TRANSIENT = LOCK_CONFLICT | CONNECTION_LOST | CANNOT_CONNECT | {1317}  # 1317: query interrupted (KILL QUERY)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, MqliteError) and exc.transient


def _log(exc: BaseException | None, attempt: int) -> None:
    # Lock conflicts are the normal cost of concurrency: debug. A lost connection is worth a warning.
    code = getattr(exc, "code", None)
    level = logging.DEBUG if code in LOCK_CONFLICT else logging.WARNING
    log.log(level, "transient error, retrying (attempt %d): %s", attempt, exc)


def _log_retry(state: Any) -> None:
    _log(state.outcome.exception() if state.outcome else None, state.attempt_number + 1)


def transient_policy(max_seconds: float = 10.0) -> Retrying:
    """The one policy for transient errors: exponential backoff with jitter, bounded in time.

    Bounded by time, not by tries: a burst of lock conflicts (on a Galera cluster, certification
    conflicts come in storms) can take more tries than a lost connection, in the same few seconds.
    """
    # Imported here, not at the top: `import mqlite` does not load tenacity until a Queue needs it.
    from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

    return Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_delay(max_seconds),
        wait=wait_random_exponential(multiplier=0.02, max=1.0),
        before_sleep=_log_retry,
        reraise=True,
    )


def call(policy: Retrying | None, fn: Callable[[], T]) -> T:
    """Run `fn`, retrying transient MqliteErrors under `policy` (None: no retry).

    The first try runs outside tenacity so the common, successful call pays nothing for it.
    """
    try:
        return fn()
    except MqliteError as exc:
        if policy is None or not exc.transient:
            raise
        _log(exc, 1)
    return policy.copy()(fn)
