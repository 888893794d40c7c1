"""The HTTP API, status page and metrics over one `Queue`: parse and check the request, call the
library in a threadpool, answer JSON. No SQL here; every database call is a public `Queue` method.

Routes (JSON unless said otherwise; every error is `{"error": code, "message": text}` with a 4xx/5xx):

    POST /q/{queue}                     push the request body as is         201 {"id", "queue"}
         ?delay=S&unique_key=K&if_exists=raise|ignore&max_attempts=N        409 duplicate, 413 too large
         &concurrency_key=K&max_running=N
    GET  /q/{queue}[?wait=S]            pop (at-most-once): 200 raw body, X-Mqlite-Id / -Attempts; 204 empty
    POST /q/{queue}/claim               claim (at-least-once)               200 {"id", "body", "encoding",
         ?lease=S&wait=S&encoding=auto|base64                                     "attempts", "receipt", …}; 204
    POST /messages/{id}/ack|nack|release|fail|extend|checkpoint             200; 409 when the claim is gone
         receipt in X-Mqlite-Receipt or the JSON body {"receipt", "error", "delay", "lease", "cursor", "progress"}
    GET  /q/{queue}/failed[?limit=N]    failed messages with their last error
    POST /q/{queue}/failed/retry[?id=N…]   POST /q/{queue}/failed/purge[?older_than=S]
    POST /control/{queue}/pause|resume
    GET  /stats, /stats/{queue}         depth by state, totals, oldest ready age, paused
    GET  /metrics                       Prometheus text format
    GET  /                              the HTML status page (static files under /static/)

Writes (push, pop, claim, settling, retry, purge, pause, resume) need `Authorization: Bearer
<token>` when the app has a token. Without one (a loopback-only server), writes coming from a
browser page of another site are refused (Origin / Sec-Fetch-Site), and every request must name a
loopback Host (no DNS rebinding).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import time
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..config import check_queue, redact
from ..errors import (
    DatabaseError,
    Duplicate,
    InvalidBody,
    InvalidName,
    MqliteError,
    NotClaimed,
    PayloadTooLarge,
    SchemaMissing,
    Unavailable,
)
from ..message import Message, Receipt
from ..queue import Queue, QueueStats, Stats
from . import metrics
from .errors import ApiError, error_response
from .leases import LeaseKeeper
from .security import Guard, SecurityHeaders
from .waiting import FIRST_PAUSE, Arrivals, next_pause

log = logging.getLogger("mqlite.web")

HERE = Path(__file__).resolve().parent
DEFAULT_MAX_BODY = 1 << 20  # bytes
MAX_WAIT = 30.0  # seconds a long-poll may ask for
DEFAULT_LEASE = 30.0
MAX_LEASE = 86400.0
MAX_DELAY = 100 * 365 * 86400.0  # the library's bound
MAX_UNIQUE_KEY = 191
FAILED_LIMIT = 200  # failed messages one GET may list
SETTLE_ACTIONS = ("ack", "nack", "release", "fail", "extend", "checkpoint")
MAX_CURSOR = 16_000  # characters, the library's bound
PREVIEW_BYTES = 1000  # of a failed message's body shown in listings and on the page
PAGE_FAILED_QUEUES = 20  # queues whose failed messages the page lists
PAGE_FAILED_PER_QUEUE = 20
# The library's claimer lease. Claims asking for another lease are extended right after the
# claim: one claimer (and its sessions) per queue whatever leases clients ask for.
_CLAIM_LEASE = DEFAULT_LEASE


# -- parsing ----------------------------------------------------------------------------------


def _allow_params(request: Request, *names: str) -> None:
    unknown = sorted(set(request.query_params) - set(names))
    if unknown:
        allowed = ", ".join(names) or "none"
        raise ApiError(400, "unknown_parameter", f"unknown query parameter {unknown[0]!r} (allowed: {allowed})")


def _number(request: Request, name: str, default: float | None, low: float, high: float, *, strict_low: bool = False) -> float | None:
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


def _key(request: Request, name: str) -> str | None:
    key = request.query_params.get(name)
    if key is not None and not 1 <= len(key) <= MAX_UNIQUE_KEY:
        raise ApiError(400, "bad_parameter", f"{name} must be 1 to {MAX_UNIQUE_KEY} characters")
    return key


def _integer(text: str, name: str, low: int, high: int) -> int:
    if not text.isascii() or not text.strip().isdigit() or not low <= int(text) <= high:
        raise ApiError(400, "bad_parameter", f"{name} must be an integer from {low} to {high}, got {text[:40]!r}")
    return int(text)


def _utf8_header(value: str | None) -> str | None:
    """A header value as UTF-8 (Starlette decodes headers as latin-1; receipts carry the queue name)."""
    if value is None:
        return None
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def _queue_name(request: Request) -> str:
    try:
        return check_queue(request.path_params["queue"])
    except InvalidName as exc:
        raise ApiError(400, "bad_queue_name", str(exc)) from None


async def _read_body(request: Request, limit: int) -> bytes:
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


async def _json_object(request: Request, limit: int) -> dict[str, Any]:
    raw = await _read_body(request, limit)
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad_json", "the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", "the body must be a JSON object")
    return data


def _field_seconds(data: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise ApiError(400, "bad_parameter", f"{name} must be a number of seconds from {low:g} to {high:g}")
    return float(value)


# -- rendering --------------------------------------------------------------------------------


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat(sep=" ")


def _stats_json(s: QueueStats) -> dict[str, Any]:
    return {
        "queue": s.queue, "ready": s.ready, "delayed": s.delayed, "claimed": s.claimed, "failed": s.failed,
        "processed": s.processed, "failed_total": s.failed_total, "oldest_ready": _iso(s.oldest_ready),
        "oldest_age": s.oldest_age, "counted_since": _iso(s.counted_since), "paused": s.paused,
    }


def _body_json(body: bytes, encoding: str) -> tuple[str, str]:
    """(encoding, text): UTF-8 text when the body is valid UTF-8 and base64 was not asked for."""
    if encoding == "auto":
        try:
            return "utf-8", body.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return "base64", base64.b64encode(body).decode("ascii")


def _failed_json(m: Message) -> dict[str, Any]:
    preview = m.body[:PREVIEW_BYTES].decode("utf-8", "replace")
    return {
        "id": m.id, "attempts": m.attempts, "failed_at": _iso(m.failed_at), "created_at": _iso(m.created_at),
        "last_error": m.last_error, "body_preview": preview, "body_bytes": len(m.body),
        "truncated": len(m.body) > PREVIEW_BYTES,
    }


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


# -- the pieces of state the routes share ------------------------------------------------------


class StatsCache:
    """`Queue.stats()` at most once per `ttl` seconds, shared by the page and /stats (one read in flight)."""

    def __init__(self, queue: Queue, ttl: float) -> None:
        self._queue = queue
        self.ttl = ttl
        self._value: Stats | None = None
        self._at = 0.0
        self._lock: asyncio.Lock | None = None

    def invalidate(self) -> None:
        self._value = None

    async def get(self) -> Stats:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._value is None or time.monotonic() - self._at >= self.ttl:
                self._value = await run_in_threadpool(self._queue.stats)
                self._at = time.monotonic()
            return self._value


# -- the app ------------------------------------------------------------------------------------


def create_app(
    queue: Queue,
    *,
    token: str | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    allowed_hosts: list[str] | None = None,
    loopback_only: bool | None = None,
    stats_ttl: float = 1.0,
    max_queues: int = 64,
    lease_sweep: float = 1.0,
    refresh: float = 2.0,
) -> Starlette:
    """An ASGI app serving `queue` over HTTP. The caller owns `queue` (and closes it).

    `token`: writes need `Authorization: Bearer <token>`. `max_body`: largest body accepted (bytes).
    `allowed_hosts`: Host names served ("*": any). Else `loopback_only` (default: when there is no
    token) serves only loopback Host names, which defeats DNS rebinding against a local server.
    `stats_ttl`: seconds a stats read is reused by /stats and the page. `max_queues`: distinct queues
    this server pops or claims from (each keeps claim sessions open in the library). `lease_sweep`:
    seconds between checks of HTTP claims' leases. `refresh`: the page's polling period.
    """
    if not isinstance(max_body, int) or max_body < 1:
        raise ValueError("max_body must be a positive number of bytes")
    if token is not None and not token:
        token = None
    guard = Guard(token)
    arrivals = Arrivals()
    stats_cache = StatsCache(queue, stats_ttl)
    consuming: set[str] = set()

    def on_ready(name: str) -> None:
        stats_cache.invalidate()
        arrivals.notify(name)

    leases = LeaseKeeper(queue, on_ready, every=lease_sweep)
    registry = metrics.registry(
        queue, lambda: {"waiting_requests": float(arrivals.waiting), "claims_held": float(len(leases))}
    )
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,  # every template, whatever its name: bodies and errors are user data
        undefined=jinja2.StrictUndefined,
    )

    def settings_text(exc: BaseException) -> str:
        return redact(str(exc), queue.settings)

    def consume_slot(name: str) -> None:
        if name not in consuming:
            if len(consuming) >= max_queues:
                raise ApiError(
                    429, "too_many_queues",
                    f"this server already consumes from {max_queues} queues (each keeps database sessions open)",
                )
            consuming.add(name)

    async def poll(request: Request, name: str, wait: float, fetch: Callable[[], Message | None]) -> Message | None:
        """`fetch` now, then again with backoff (or when woken) until a message or `wait` seconds.

        No database connection is held between two tries: the request sleeps in the event loop.
        """
        deadline = time.monotonic() + wait
        pause = FIRST_PAUSE
        while True:
            message = await run_in_threadpool(fetch)
            remaining = deadline - time.monotonic()
            if message is not None or remaining <= 0:
                return message
            if await request.is_disconnected():
                return None  # nobody to hand a message to: take nothing
            await arrivals.wait(name, min(pause, remaining))
            pause = next_pause(pause)

    # -- producing and consuming ---------------------------------------------------------------

    async def push(request: Request) -> Response:
        guard.check(request)
        name = _queue_name(request)
        _allow_params(request, "delay", "unique_key", "if_exists", "max_attempts", "concurrency_key", "max_running")
        delay = _number(request, "delay", None, 0.0, MAX_DELAY)
        key = _key(request, "unique_key")
        ckey = _key(request, "concurrency_key")
        running_text = request.query_params.get("max_running")
        if running_text is not None and ckey is None:
            raise ApiError(400, "bad_parameter", "max_running needs a concurrency_key")
        max_running = 1 if running_text is None else _integer(running_text, "max_running", 1, 65535)
        if_exists = request.query_params.get("if_exists", "raise")
        if if_exists not in ("raise", "ignore"):
            raise ApiError(400, "bad_parameter", "if_exists must be raise or ignore")
        attempts_text = request.query_params.get("max_attempts")
        max_attempts = None if attempts_text is None else _integer(attempts_text, "max_attempts", 1, 65535)
        body = await _read_body(request, max_body)
        extra: dict[str, Any] = {} if ckey is None else {"concurrency_key": ckey, "max_running": max_running}
        new_id = await run_in_threadpool(
            queue.push, name, body, delay=delay, unique_key=key, if_exists=if_exists,  # type: ignore[arg-type]
            max_attempts=max_attempts, **extra,
        )
        if not delay:
            on_ready(name)
        else:
            stats_cache.invalidate()
        return JSONResponse({"id": new_id, "queue": name}, status_code=201)

    async def pop(request: Request) -> Response:
        if request.method == "HEAD":  # Starlette answers HEAD on GET routes: never pop for a HEAD
            raise ApiError(405, "method_not_allowed", "HEAD would consume a message: use GET", {"Allow": "GET"})
        guard.check(request)
        name = _queue_name(request)
        _allow_params(request, "wait")
        wait = _number(request, "wait", 0.0, 0.0, MAX_WAIT) or 0.0
        consume_slot(name)
        message = await poll(request, name, wait, lambda: queue.pop(name))
        if message is None:
            return await empty(name)
        stats_cache.invalidate()
        return Response(
            message.body, status_code=200, media_type="application/octet-stream",
            headers={"X-Mqlite-Id": str(message.id), "X-Mqlite-Attempts": str(message.attempts)},
        )

    async def empty(name: str) -> Response:
        paused = await run_in_threadpool(queue.is_paused, name)
        return Response(status_code=204, headers={"X-Mqlite-Paused": "true"} if paused else None)

    async def claim(request: Request) -> Response:
        guard.check(request)
        name = _queue_name(request)
        _allow_params(request, "lease", "wait", "encoding")
        lease = _number(request, "lease", DEFAULT_LEASE, 0.0, MAX_LEASE, strict_low=True) or DEFAULT_LEASE
        wait = _number(request, "wait", 0.0, 0.0, MAX_WAIT) or 0.0
        encoding = request.query_params.get("encoding", "auto")
        if encoding not in ("auto", "base64"):
            raise ApiError(400, "bad_parameter", "encoding must be auto or base64")
        consume_slot(name)
        message = await poll(request, name, wait, lambda: queue.take(name, lease=_CLAIM_LEASE))
        if message is None:
            return await empty(name)
        receipt = str(message.receipt)
        if lease != _CLAIM_LEASE and not await run_in_threadpool(queue.extend, message, lease):
            raise ApiError(409, "claim_gone", f"the claim on message {message.id} was lost at once; it will come back")
        leases.hold(receipt, name, lease)
        stats_cache.invalidate()
        kind, text = _body_json(message.body, encoding)
        return JSONResponse(
            {
                "id": message.id, "queue": name, "body": text, "encoding": kind, "attempts": message.attempts,
                "max_attempts": message.max_attempts or queue.max_attempts, "lease": lease, "receipt": receipt,
                "created_at": _iso(message.created_at), "cursor": message.cursor,
                "progress": message.progress,
            },
            headers={"X-Mqlite-Id": str(message.id), "X-Mqlite-Attempts": str(message.attempts)},
        )

    async def settle(request: Request) -> Response:
        if request.path_params["action"] not in SETTLE_ACTIONS:
            raise HTTPException(404)
        guard.check(request)
        message_id: int = request.path_params["id"]
        action: str = request.path_params["action"]
        _allow_params(request)
        data = await _json_object(request, max_body)
        text = _utf8_header(request.headers.get("x-mqlite-receipt")) or data.get("receipt")
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
        if action == "ack":
            done = await run_in_threadpool(queue.ack, text)
        elif action == "nack":
            delay = _field_seconds(data, "delay", 0.0, MAX_DELAY)
            done = await run_in_threadpool(queue.nack, text, error, delay=delay)
        elif action == "fail":
            done = await run_in_threadpool(queue.fail, text, error or "failed over HTTP")
        elif action == "release":
            delay = _field_seconds(data, "delay", 0.0, MAX_DELAY) or 0.0
            done = await run_in_threadpool(queue.release, text, delay)
        elif action == "checkpoint":
            cursor, progress = data.get("cursor"), data.get("progress")
            if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR:
                raise ApiError(400, "bad_parameter", f"cursor must be a string of at most {MAX_CURSOR} characters")
            if progress is not None and (
                isinstance(progress, bool) or not isinstance(progress, (int, float)) or not math.isfinite(progress)
            ):
                raise ApiError(400, "bad_parameter", "progress must be a number")
            lease = _field_seconds(data, "lease", 0.0, MAX_LEASE) or DEFAULT_LEASE
            done = await run_in_threadpool(queue.checkpoint, text, cursor, progress, lease=lease)
            if done:
                leases.extend(text, lease)
        else:  # extend
            lease = _field_seconds(data, "lease", 0.0, MAX_LEASE) or DEFAULT_LEASE
            done = await run_in_threadpool(queue.extend, text, lease)
            if done:
                leases.extend(text, lease)
        if action not in ("extend", "checkpoint"):
            leases.drop(text)
        if not done:
            raise ApiError(
                409, "claim_gone",
                f"the claim on message {message_id} is gone (settled, or its lease expired and it was returned)",
            )
        if action in ("nack", "release"):
            on_ready(receipt.queue)
        else:
            stats_cache.invalidate()
        return JSONResponse({"id": message_id, "done": action})

    # -- failed messages and control ------------------------------------------------------------

    async def failed(request: Request) -> Response:
        name = _queue_name(request)
        _allow_params(request, "limit")
        limit = _integer(request.query_params.get("limit", "50"), "limit", 1, FAILED_LIMIT)
        found = await run_in_threadpool(queue.peek, name, limit, failed=True)
        return JSONResponse({"queue": name, "messages": [_failed_json(m) for m in found]})

    async def retry(request: Request) -> Response:
        guard.check(request)
        name = _queue_name(request)
        _allow_params(request, "id")
        ids = [_integer(i, "id", 1, 2**63 - 1) for i in request.query_params.getlist("id")] or None
        count = await run_in_threadpool(queue.retry_failed, name, ids)
        on_ready(name)
        return JSONResponse({"queue": name, "retried": count})

    async def purge(request: Request) -> Response:
        guard.check(request)
        name = _queue_name(request)
        _allow_params(request, "older_than")
        older = _number(request, "older_than", None, 0.0, MAX_DELAY)
        count = await run_in_threadpool(queue.purge_failed, name, older)
        stats_cache.invalidate()
        return JSONResponse({"queue": name, "purged": count})

    async def control(request: Request) -> Response:
        if request.path_params["action"] not in ("pause", "resume"):
            raise HTTPException(404)
        guard.check(request)
        name = _queue_name(request)
        _allow_params(request)
        if request.path_params["action"] == "pause":
            await run_in_threadpool(queue.pause, name)
            stats_cache.invalidate()
        else:
            await run_in_threadpool(queue.resume, name)
            on_ready(name)
        return JSONResponse({"queue": name, "paused": await run_in_threadpool(queue.is_paused, name)})

    # -- reading ---------------------------------------------------------------------------------

    async def stats_all(request: Request) -> Response:
        _allow_params(request)
        s = await stats_cache.get()
        return JSONResponse(
            {"queues": {n: _stats_json(v) for n, v in s.queues.items()}, "sees_all_connections": s.sees_all_connections}
        )

    async def stats_one(request: Request) -> Response:
        name = _queue_name(request)
        _allow_params(request)
        s = (await stats_cache.get()).queues.get(name)
        if s is None:
            raise ApiError(404, "unknown_queue", "no message and no counter of this queue in the table")
        return JSONResponse(_stats_json(s))

    async def prometheus(request: Request) -> Response:
        _allow_params(request)
        data = await run_in_threadpool(generate_latest, registry)
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    async def page(request: Request) -> Response:
        _allow_params(request)
        s = await stats_cache.get()
        with_failures = [n for n, v in s.queues.items() if v.failed][:PAGE_FAILED_QUEUES]
        listed = [  # one after the other: the page must not take a pool connection per queue at once
            await run_in_threadpool(queue.peek, n, PAGE_FAILED_PER_QUEUE, failed=True) for n in with_failures
        ]
        biggest = max((v.ready + v.delayed + v.claimed + v.failed for v in s.queues.values()), default=0)
        html = templates.get_template("index.html").render(
            table=queue.table, queues=list(s.queues.values()), failed=dict(zip(with_failures, listed)),
            preview=lambda m: _failed_json(m)["body_preview"], age=_age, biggest=max(biggest, 1),
            auth_required=guard.required, refresh_ms=int(refresh * 1000),
            sees_all=s.sees_all_connections, now=datetime.now().strftime("%H:%M:%S"),
        )
        return HTMLResponse(html)

    # -- errors -----------------------------------------------------------------------------------

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        codes = {404: "not_found", 405: "method_not_allowed"}
        message = {404: "no such route", 405: "method not allowed on this route"}.get(exc.status_code, str(exc.detail))
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), message, dict(exc.headers or {}))

    async def library_error(request: Request, exc: Exception) -> Response:
        text = settings_text(exc)
        if isinstance(exc, Duplicate):
            return error_response(409, "duplicate", text, existing_id=exc.existing_id)
        status, code = (
            (413, "payload_too_large") if isinstance(exc, PayloadTooLarge)
            else (400, "bad_queue_name") if isinstance(exc, InvalidName)
            else (400, "bad_body") if isinstance(exc, InvalidBody)
            else (409, "claim_gone") if isinstance(exc, NotClaimed)
            else (503, "unavailable") if isinstance(exc, Unavailable)
            else (503, "schema_missing") if isinstance(exc, SchemaMissing)
            else (500, "database_error") if isinstance(exc, DatabaseError)
            else (400, "bad_request") if isinstance(exc, ValueError)
            else (500, "error")
        )
        if status >= 500:
            log.warning("mqlite web: %s %s: %s: %s", request.method, request.url.path, type(exc).__name__, text)
        return error_response(status, code, text)

    async def value_error(request: Request, exc: Exception) -> Response:
        # The library's own argument checks (a bound the HTTP layer did not repeat).
        return error_response(400, "bad_request", settings_text(exc))

    async def internal_error(request: Request, exc: Exception) -> Response:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        log.error("mqlite web: %s %s failed:\n%s", request.method, request.url.path, redact(tb, queue.settings))
        return error_response(500, "internal", "internal error (see the server's log)")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        keeper = asyncio.create_task(leases.run())
        try:
            yield
        finally:
            keeper.cancel()
            try:
                await keeper
            except asyncio.CancelledError:
                pass

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/stats", stats_all, methods=["GET"]),
        Route("/stats/{queue}", stats_one, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
        Route("/q/{queue}", push, methods=["POST"]),
        Route("/q/{queue}", pop, methods=["GET"]),
        Route("/q/{queue}/claim", claim, methods=["POST"]),
        Route("/q/{queue}/failed", failed, methods=["GET"]),
        Route("/q/{queue}/failed/retry", retry, methods=["POST"]),
        Route("/q/{queue}/failed/purge", purge, methods=["POST"]),
        Route("/messages/{id:int}/{action:str}", settle, methods=["POST"]),
        Route("/control/{queue}/{action:str}", control, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            ApiError: api_error,
            HTTPException: http_error,
            MqliteError: library_error,
            ValueError: value_error,
            Exception: internal_error,
        },
    )
    app.state.arrivals = arrivals
    app.state.leases = leases
    if loopback_only is None:
        loopback_only = token is None
    app.add_middleware(SecurityHeaders, allowed_hosts=allowed_hosts, loopback_only=loopback_only)
    return app

