"""The retry policy: which MySQL errors are transient, how often and how long to retry.

What is safe to redo is decided by the callers in queue.py, not here:
- a claim is always safe to redo: rows claimed by a lost connection are orphans and come back by recovery;
- a push redone after a lost connection may insert the message twice (the first INSERT may have
  committed before the connection died): push is at-least-once unless it carries a unique key;
- deadlocks (1213) and lock wait timeouts (1205) roll the statement back, so redoing it is exact.
"""

from __future__ import annotations

import logging
import time
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
# 1040: max_connections reached; 1203: the account's max_user_connections.
CANNOT_CONNECT = frozenset({2002, 2003, 1040, 1203})
TRANSIENT = LOCK_CONFLICT | CONNECTION_LOST | CANNOT_CONNECT | {1317}  # 1317: query interrupted (KILL QUERY)
# The server refuses writes for now (errors.ReadOnly, errors.StorageFull; both transient).
# 1290 "running with the --read-only option" (its code is shared by other options: the text
# tells); 1836 MySQL's read-only mode. 1114 the table is full (InnoDB: disk or tablespace full),
# 1021 disk full; 3, 1026 and 1030 report a failed write, out of space when the errno is 28.
READ_ONLY = frozenset({1290, 1836})
OUT_OF_SPACE = frozenset({1114, 1021})
WRITE_FAILED = frozenset({3, 1026, 1030})


def read_only(code: int, text: str) -> bool:
    return code == 1836 or (code == 1290 and ("read-only" in text.lower() or "read_only" in text.lower()))


def out_of_space(code: int, text: str) -> bool:
    return code in OUT_OF_SPACE or (code in WRITE_FAILED and ("28" in text or "no space" in text.lower()))


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, MqliteError) and exc.transient


def _log(exc: BaseException | None, attempt: int) -> None:
    # Lock conflicts are the normal cost of concurrency: debug. A lost connection is worth a warning.
    code = getattr(exc, "code", None)
    level = logging.DEBUG if code in LOCK_CONFLICT else logging.WARNING
    log.log(level, "transient error, retrying (attempt %d): %s", attempt, exc)


def _log_retry(state: Any) -> None:
    _log(state.outcome.exception() if state.outcome else None, state.attempt_number + 1)


class Policy:
    """The one policy for transient errors: exponential backoff with jitter, bounded in time.

    Bounded by time, not by tries: a burst of lock conflicts (on a Galera cluster, certification
    conflicts come in storms) can take more tries than a lost connection, in the same few seconds.
    The bound counts from the start of the first try: no try starts later than `max_seconds` after
    it, so a call lasts at most `max_seconds` plus one try (each try bounded by the timeouts).
    """

    __slots__ = ("max_seconds",)

    def __init__(self, max_seconds: float) -> None:
        self.max_seconds = max_seconds

    def retrying(self, deadline: float) -> Retrying:
        """A tenacity Retrying that makes no try after `deadline` (time.monotonic())."""
        # Imported here, not at the top: tenacity is loaded only once something is retried.
        from tenacity import Retrying, retry_if_exception, wait_random_exponential

        backoff = wait_random_exponential(multiplier=0.02, max=1.0)
        return Retrying(
            retry=retry_if_exception(is_transient),
            stop=lambda state: time.monotonic() >= deadline,
            wait=lambda state: min(backoff(state), max(0.0, deadline - time.monotonic())),
            before_sleep=_log_retry,
            reraise=True,
        )


def transient_policy(max_seconds: float = 10.0) -> Policy:
    """The retry policy of a Queue: transient errors retried for up to `max_seconds`."""
    return Policy(max_seconds)


def call(policy: Policy | None, fn: Callable[[], T], *, started: float | None = None) -> T:
    """Run `fn`, retrying transient MqliteErrors under `policy` (None: no retry).

    The retries end `policy.max_seconds` after `started` (time.monotonic(); default: now), so
    the steps of one public call can share one bound. The first try runs outside tenacity so the
    common, successful call pays nothing for it.
    """
    if started is None:
        started = time.monotonic()
    try:
        return fn()
    except MqliteError as exc:
        if policy is None or not exc.transient or time.monotonic() >= started + policy.max_seconds:
            raise
        _log(exc, 1)
    return policy.retrying(started + policy.max_seconds)(fn)
