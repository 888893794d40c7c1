"""Operating a queue over HTTP: failed messages (list, retry, purge), pause/resume, stats and /metrics."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..config import MAX_DELAY
from .errors import ApiError
from .parsing import allow_params, integer, number, queue_name
from .shapes import failed_json, history_json, stats_json
from .state import api

FAILED_LIMIT = 200  # failed messages one GET may list


async def failed(request: Request) -> Response:
    a = api(request)
    name = queue_name(request)
    allow_params(request, "limit")
    limit = integer(request.query_params.get("limit", "50"), "limit", 1, FAILED_LIMIT)
    found = await a.aq.peek(name, limit, failed=True)
    return JSONResponse({"queue": name, "messages": [failed_json(m) for m in found]})


async def history(request: Request) -> Response:
    a = api(request)
    name = queue_name(request)
    allow_params(request, "outcome", "since", "limit")
    limit = integer(request.query_params.get("limit", "50"), "limit", 1, FAILED_LIMIT)
    since = number(request, "since", None, 0.0, MAX_DELAY)
    outcome = request.query_params.get("outcome")
    found = await a.aq.history(name, outcome=outcome, since=since, limit=limit)
    return JSONResponse({"queue": name, "history_days": await a.aq.history_days(name),
                         "messages": [history_json(e) for e in found]})


async def retry(request: Request) -> Response:
    a = api(request)
    a.guard.check(request)
    name = queue_name(request)
    allow_params(request, "id")
    ids = [integer(i, "id", 1, 2**63 - 1) for i in request.query_params.getlist("id")] or None
    count = await a.aq.retry_failed(name, ids)
    a.on_ready(name)
    return JSONResponse({"queue": name, "retried": count})


async def purge(request: Request) -> Response:
    a = api(request)
    a.guard.check(request)
    name = queue_name(request)
    allow_params(request, "older_than")
    older = number(request, "older_than", None, 0.0, MAX_DELAY)
    count = await a.aq.purge_failed(name, older)
    a.stats.invalidate()
    return JSONResponse({"queue": name, "purged": count})


async def control(request: Request) -> Response:
    if request.path_params["action"] not in ("pause", "resume"):
        raise HTTPException(404)
    a = api(request)
    a.guard.check(request)
    name = queue_name(request)
    allow_params(request)
    if request.path_params["action"] == "pause":
        await a.aq.pause(name)
        a.stats.invalidate()
    else:
        await a.aq.resume(name)
        a.on_ready(name)
    return JSONResponse({"queue": name, "paused": await a.aq.is_paused(name)})


async def stats_all(request: Request) -> Response:
    allow_params(request)
    s = await api(request).stats.get()
    return JSONResponse(
        {"queues": {n: stats_json(v) for n, v in s.queues.items()}, "sees_all_connections": s.sees_all_connections}
    )


async def stats_one(request: Request) -> Response:
    name = queue_name(request)
    allow_params(request)
    s = (await api(request).stats.get()).queues.get(name)
    if s is None:
        raise ApiError(404, "unknown_queue", "no message and no counter of this queue in the table")
    return JSONResponse(stats_json(s))


async def prometheus(request: Request) -> Response:
    allow_params(request)
    data = await run_in_threadpool(generate_latest, api(request).registry)
    return Response(data, media_type=CONTENT_TYPE_LATEST)
