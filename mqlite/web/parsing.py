"""Reading a request: query parameters, path names, bodies and JSON fields, each refused with a 400/413 `ApiError`."""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.requests import Request

from ..config import check_key, check_queue
from ..errors import InvalidName
from .errors import ApiError


def allow_params(request: Request, *names: str) -> None:
    unknown = sorted(set(request.query_params) - set(names))
    if unknown:
        allowed = ", ".join(names) or "none"
        raise ApiError(400, "unknown_parameter", f"unknown query parameter {unknown[0]!r} (allowed: {allowed})")


def number(request: Request, name: str, default: float | None, low: float, high: float, *,
           strict_low: bool = False) -> float | None:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ApiError(400, "bad_parameter", f"{name} must be a number of seconds, got {text[:40]!r}") from None
    if not math.isfinite(value) or value < low or value > high or (strict_low and value == low):
        bound = f"more than {low:g}" if strict_low else f"at least {low:g}"
        raise ApiError(400, "bad_parameter", f"{name} must be {bound} and at most {high:g}, got {text[:40]!r}")
    return value


def key(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    try:
        return check_key(value, name)
    except InvalidName as exc:
        raise ApiError(400, "bad_parameter", str(exc)) from None


def integer(text: str, name: str, low: int, high: int) -> int:
    if not text.isascii() or not text.strip().isdigit() or not low <= int(text) <= high:
        raise ApiError(400, "bad_parameter", f"{name} must be an integer from {low} to {high}, got {text[:40]!r}")
    return int(text)


def signed(text: str, name: str, low: int, high: int) -> int:
    """An integer that may be negative (a priority)."""
    digits = text[1:] if text[:1] in ("-", "+") else text
    if not text.isascii() or not digits.isdigit() or not low <= int(text) <= high:
        raise ApiError(400, "bad_parameter", f"{name} must be an integer from {low} to {high}, got {text[:40]!r}")
    return int(text)


def utf8_header(value: str | None) -> str | None:
    """A header value as UTF-8 (Starlette decodes headers as latin-1; receipts carry the queue name)."""
    if value is None:
        return None
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def queue_name(request: Request) -> str:
    try:
        return check_queue(request.path_params["queue"])
    except InvalidName as exc:
        raise ApiError(400, "bad_queue_name", str(exc)) from None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "payload_too_large", f"body of {int(declared)} bytes is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_object(request: Request, limit: int) -> dict[str, Any]:
    raw = await read_body(request, limit)
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad_json", "the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", "the body must be a JSON object")
    return data


def field_seconds(data: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or not low <= value <= high):
        raise ApiError(400, "bad_parameter", f"{name} must be a number of seconds from {low:g} to {high:g}")
    return float(value)
