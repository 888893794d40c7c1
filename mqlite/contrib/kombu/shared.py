"""What the kombu transport's modules share: the process-wide Queue, a held claim, URL and delay parsing."""

from __future__ import annotations

import os
import threading
from datetime import datetime
from typing import Any

from ...config import PRIORITY_MAX, PRIORITY_MIN
from ...message import Message as MqMessage
from ...queue import Queue


class Shared:
    """One mqlite.Queue per process and configuration, shared by kombu connections, refcounted.

    Celery opens several connections per process (consumer, producers, events). Closing a Queue
    closes its claim sessions, which orphans every claim they hold, so it is closed only when the
    last connection using it closes. Keyed by pid: a forked child builds its own and never
    touches (or closes) the parent's, whose sessions it shares.
    """

    _lock = threading.Lock()
    _queues: dict[tuple, list[Any]] = {}

    @classmethod
    def acquire(cls, dsn: str | None, options: dict[str, Any]) -> Queue:
        key = (os.getpid(), dsn, tuple(sorted(options.items())))
        with cls._lock:
            entry = cls._queues.get(key)
            if entry is None:
                entry = cls._queues[key] = [Queue(dsn, **options), 0]
            entry[1] += 1
            return entry[0]

    @classmethod
    def release(cls, queue: Queue) -> None:
        with cls._lock:
            for key, entry in list(cls._queues.items()):
                if entry[0] is queue and key[0] == os.getpid():
                    entry[1] -= 1
                    if entry[1] > 0:
                        return
                    del cls._queues[key]
                    break
            else:
                return
        queue.close()


class Claim:
    """One message this channel has claimed and not settled: buffered, or handed to kombu."""

    __slots__ = ("tag", "message", "renew_at")

    def __init__(self, message: MqMessage, renew_at: float) -> None:
        self.tag = str(message.receipt)  # the delivery tag: unique per claim
        self.message = message
        self.renew_at = renew_at


def dsn_of(hostname: str | None) -> str | None:
    """The DSN from kombu's hostname (`mysql://…`, the part after `mqlite+`); None -> MQLITE_DSN."""
    if not hostname or "://" not in hostname:
        return None
    scheme, rest = hostname.split("://", 1)
    if scheme in ("mqlite", "mqlite+mysql"):
        return "mysql://" + rest
    return hostname


def priority_of(message: dict) -> int:
    """The message's `priority` property (Celery's task option), within mqlite's range; else 0."""
    value = (message.get("properties") or {}).get("priority")
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return max(PRIORITY_MIN, min(PRIORITY_MAX, value))


def delay_of(message: dict) -> float | None:
    """Seconds until the message is due: Celery's `eta` header, or a `DelaySeconds` property."""
    properties = message.get("properties") or {}
    seconds = properties.get("DelaySeconds")
    if seconds is not None:
        try:
            return max(0.0, float(seconds))
        except (TypeError, ValueError):
            return None
    eta = (message.get("headers") or {}).get("eta")
    if not eta:
        return None
    try:
        when = eta if isinstance(eta, datetime) else datetime.fromisoformat(str(eta))
    except ValueError:
        return None
    now = datetime.now(when.tzinfo) if when.tzinfo else datetime.now()
    return max(0.0, (when - now).total_seconds())

