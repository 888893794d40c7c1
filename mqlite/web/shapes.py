"""The JSON the API answers with: stats, claimed bodies, failed messages."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from ..message import Message
from ..queue import HistoryEntry, QueueStats

PREVIEW_BYTES = 1000  # of a failed message's body shown in listings and on the page


def iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat(sep=" ")


def stats_json(s: QueueStats) -> dict[str, Any]:
    return {
        "queue": s.queue, "ready": s.ready, "delayed": s.delayed, "claimed": s.claimed, "failed": s.failed,
        "processed": s.processed, "failed_total": s.failed_total, "oldest_ready": iso(s.oldest_ready),
        "oldest_age": s.oldest_age, "counted_since": iso(s.counted_since), "paused": s.paused,
        "cancelling": s.cancelling,
    }


def body_json(body: bytes, encoding: str) -> tuple[str, str]:
    """(encoding, text): UTF-8 text when the body is valid UTF-8 and base64 was not asked for."""
    if encoding == "auto":
        try:
            return "utf-8", body.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return "base64", base64.b64encode(body).decode("ascii")


def failed_json(m: Message) -> dict[str, Any]:
    preview = m.body[:PREVIEW_BYTES].decode("utf-8", "replace")
    return {
        "id": m.id, "priority": m.priority, "attempts": m.attempts, "failed_at": iso(m.failed_at),
        "created_at": iso(m.created_at),
        "last_error": m.last_error, "body_preview": preview, "body_bytes": len(m.body),
        "truncated": len(m.body) > PREVIEW_BYTES,
    }


def history_json(e: HistoryEntry) -> dict[str, Any]:
    return {
        "id": e.id, "outcome": e.outcome, "attempts": e.attempts, "created_at": iso(e.created_at),
        "first_claimed_at": iso(e.first_claimed_at), "finished_at": iso(e.finished_at), "duration": e.duration,
        "last_error": e.last_error, "worker": e.worker,
        "body_preview": e.body[:PREVIEW_BYTES].decode("utf-8", "replace"),
        "body_bytes": len(e.body), "truncated": len(e.body) > PREVIEW_BYTES,
    }
