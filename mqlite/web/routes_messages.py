"""Producing and consuming over HTTP: push, pop, claim, and settling a claim (ack, nack, release, fail,
extend, checkpoint)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..config import COUNT_MAX, CURSOR_MAX, DEFAULT_LEASE, MAX_DELAY, PRIORITY_MAX, PRIORITY_MIN
from ..errors import Cancelled, MqliteError, NotClaimed, NotFound
from ..message import Receipt
from .errors import ApiError
from .parsing import (
    allow_params,
    field_seconds,
    integer,
    json_object,
    key,
    number,
    queue_name,
    read_body,
    signed,
    utf8_header,
)
from .shapes import body_json, iso
from .state import Api, api

MAX_WAIT = 30.0  # seconds a long-poll may ask for
MAX_LEASE = 86400.0
# The library's claimer lease. Claims asking for another lease are extended right after the
# claim: one claimer (and its sessions) per queue whatever leases clients ask for.
_CLAIM_LEASE = DEFAULT_LEASE


async def push(request: Request) -> Response:
    a = api(request)
    a.guard.check(request)
    name = queue_name(request)
    allow_params(request, "delay", "unique_key", "if_exists", "max_attempts", "concurrency_key", "max_running",
                 "priority")
    delay = number(request, "delay", None, 0.0, MAX_DELAY)
    unique_key = key(request, "unique_key")
    ckey = key(request, "concurrency_key")
    running_text = request.query_params.get("max_running")
    if running_text is not None and ckey is None:
        raise ApiError(400, "bad_parameter", "max_running needs a concurrency_key")
    max_running = 1 if running_text is None else integer(running_text, "max_running", 1, COUNT_MAX)
    if_exists = request.query_params.get("if_exists", "raise")
    if if_exists not in ("raise", "ignore"):
        raise ApiError(400, "bad_parameter", "if_exists must be raise or ignore")
    attempts_text = request.query_params.get("max_attempts")
    max_attempts = None if attempts_text is None else integer(attempts_text, "max_attempts", 1, COUNT_MAX)
    priority_text = request.query_params.get("priority")
    priority = None if priority_text is None else signed(priority_text, "priority", PRIORITY_MIN, PRIORITY_MAX)
    body = await read_body(request, a.max_body)
    # Only the options given: a plain push goes into one INSERT with the others arriving meanwhile.
    options: dict[str, Any] = {k: v for k, v in (("delay", delay), ("unique_key", unique_key),
                                                 ("max_attempts", max_attempts), ("priority", priority))
                                if v is not None}
    if unique_key is not None:
        options["if_exists"] = if_exists
    if ckey is not None:
        options.update(concurrency_key=ckey, max_running=max_running)
    new_id = await a.aq.push(name, body, **options)
    if not delay:
        a.on_ready(name)
    else:
        a.stats.invalidate()
    return JSONResponse({"id": new_id, "queue": name}, status_code=201)


async def pop(request: Request) -> Response:
    if request.method == "HEAD":  # Starlette answers HEAD on GET routes: never pop for a HEAD
        raise ApiError(405, "method_not_allowed", "HEAD would consume a message: use GET", {"Allow": "GET"})
    a = api(request)
    a.guard.check(request)
    name = queue_name(request)
    allow_params(request, "wait")
    wait = number(request, "wait", 0.0, 0.0, MAX_WAIT) or 0.0
    a.consume_slot(name)
    message = await a.poll(request, name, wait, lambda: a.aq.pop(name))
    if message is None:
        return await _empty(a, name)
    a.stats.invalidate()
    return Response(
        message.body, status_code=200, media_type="application/octet-stream",
        headers={"X-Mqlite-Id": str(message.id), "X-Mqlite-Attempts": str(message.attempts),
                 "X-Mqlite-Priority": str(message.priority)},
    )


async def claim(request: Request) -> Response:
    a = api(request)
    a.guard.check(request)
    name = queue_name(request)
    allow_params(request, "lease", "wait", "encoding")
    lease = number(request, "lease", DEFAULT_LEASE, 0.0, MAX_LEASE, strict_low=True) or DEFAULT_LEASE
    wait = number(request, "wait", 0.0, 0.0, MAX_WAIT) or 0.0
    encoding = request.query_params.get("encoding", "auto")
    if encoding not in ("auto", "base64"):
        raise ApiError(400, "bad_parameter", "encoding must be auto or base64")
    a.consume_slot(name)
    message = await a.poll(request, name, wait, lambda: a.aq.take(name, lease=_CLAIM_LEASE))
    if message is None:
        return await _empty(a, name)
    receipt = str(message.receipt)
    try:
        extended = lease == _CLAIM_LEASE or await a.aq.extend(message, lease)
    except Cancelled:  # cancelled in the instant after the claim: it has ended
        raise ApiError(409, "cancelled", f"message {message.id} was cancelled as it was claimed") from None
    except BaseException:
        with contextlib.suppress(MqliteError):
            await a.aq.release(message)  # cancelled before the lease keeper knew of it: back at once
        raise
    if not extended:
        raise ApiError(409, "claim_gone", f"the claim on message {message.id} was lost at once; it will come back")
    a.leases.hold(receipt, name, lease)
    a.stats.invalidate()
    kind, text = body_json(message.body, encoding)
    return JSONResponse(
        {
            "id": message.id, "queue": name, "body": text, "encoding": kind, "attempts": message.attempts,
            "priority": message.priority,
            "max_attempts": message.max_attempts or a.queue.max_attempts, "lease": lease, "receipt": receipt,
            "created_at": iso(message.created_at), "cursor": message.cursor,
            "progress": message.progress,
        },
        headers={"X-Mqlite-Id": str(message.id), "X-Mqlite-Attempts": str(message.attempts),
                 "X-Mqlite-Priority": str(message.priority)},
    )


async def _empty(a: Api, name: str) -> Response:
    paused = await a.aq.is_paused(name)
    return Response(status_code=204, headers={"X-Mqlite-Paused": "true"} if paused else None)


# -- settling a claim ---------------------------------------------------------------------------

# Each settles the claim whose receipt is `text` with the request's JSON fields; True when it was still held.
Settler = Callable[[Api, str, dict[str, Any], "str | None"], Awaitable[bool]]


async def _ack(a: Api, text: str, data: dict[str, Any], error: str | None) -> bool:
    return await a.aq.ack(text)


async def _nack(a: Api, text: str, data: dict[str, Any], error: str | None) -> bool:
    delay = field_seconds(data, "delay", 0.0, MAX_DELAY)
    return await a.aq.nack(text, error, delay=delay)


async def _fail(a: Api, text: str, data: dict[str, Any], error: str | None) -> bool:
    return await a.aq.fail(text, error or "failed over HTTP")


async def _release(a: Api, text: str, data: dict[str, Any], error: str | None) -> bool:
    delay = field_seconds(data, "delay", 0.0, MAX_DELAY) or 0.0
    return await a.aq.release(text, delay)


async def _checkpoint(a: Api, text: str, data: dict[str, Any], error: str | None) -> bool:
    cursor, progress = data.get("cursor"), data.get("progress")
    if not isinstance(cursor, str) or len(cursor) > CURSOR_MAX:
        raise ApiError(400, "bad_parameter", f"cursor must be a string of at most {CURSOR_MAX} characters")
    if progress is not None and (
        isinstance(progress, bool) or not isinstance(progress, (int, float)) or not math.isfinite(progress)
    ):
        raise ApiError(400, "bad_parameter", "progress must be a number")
    lease = field_seconds(data, "lease", 0.0, MAX_LEASE) or DEFAULT_LEASE
    done = await a.aq.checkpoint(text, cursor, progress, lease=lease)
    if done:
        a.leases.extend(text, lease)
    return done


async def _extend(a: Api, text: str, data: dict[str, Any], error: str | None) -> bool:
    lease = field_seconds(data, "lease", 0.0, MAX_LEASE) or DEFAULT_LEASE
    done = await a.aq.extend(text, lease)
    if done:
        a.leases.extend(text, lease)
    return done


SETTLERS: dict[str, Settler] = {
    "ack": _ack, "nack": _nack, "release": _release, "fail": _fail, "extend": _extend, "checkpoint": _checkpoint,
}


async def cancel(request: Request) -> Response:
    """POST /messages/{id}/cancel?queue=NAME: removed if waiting, marked cancelling if running."""
    a = api(request)
    a.guard.check(request)
    message_id: int = request.path_params["id"]
    allow_params(request, "queue")
    name = request.query_params.get("queue")
    if not name:
        raise ApiError(400, "bad_parameter", "give the message's queue: ?queue=NAME")
    try:
        what = await a.aq.cancel(name, message_id)
    except NotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    a.stats.invalidate()
    return JSONResponse({"id": message_id, "queue": name, "result": what})


async def settle(request: Request) -> Response:
    action: str = request.path_params["action"]
    if action == "cancel":
        return await cancel(request)
    if action not in SETTLERS:
        raise HTTPException(404)
    a = api(request)
    a.guard.check(request)
    message_id: int = request.path_params["id"]
    allow_params(request)
    data = await json_object(request, a.max_body)
    text = utf8_header(request.headers.get("x-mqlite-receipt")) or data.get("receipt")
    if not isinstance(text, str) or not text:
        raise ApiError(400, "no_receipt", "give the claim's receipt in X-Mqlite-Receipt or {\"receipt\": …}")
    try:
        receipt = Receipt.parse(text)
    except NotClaimed:
        raise ApiError(400, "bad_receipt", "not a claim receipt") from None
    if receipt.id != message_id:
        raise ApiError(400, "bad_receipt", f"that receipt is for message {receipt.id}, not {message_id}")
    error = data.get("error")
    if error is not None and not isinstance(error, str):
        raise ApiError(400, "bad_parameter", "error must be a string")
    try:
        done = await SETTLERS[action](a, text, data, error)
    except Cancelled:
        a.leases.drop(text)
        raise ApiError(409, "cancelled", f"message {message_id} was cancelled: it has ended") from None
    if action not in ("extend", "checkpoint"):
        a.leases.drop(text)
    if not done:
        raise ApiError(
            409, "claim_gone",
            f"the claim on message {message_id} is gone (settled, or its lease expired and it was returned)",
        )
    if action in ("nack", "release"):
        a.on_ready(receipt.queue)
    else:
        a.stats.invalidate()
    return JSONResponse({"id": message_id, "done": action})
