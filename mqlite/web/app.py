"""The HTTP API, status page and metrics over one `Queue`: parse and check the request, call the
library through `mqlite.aio` (never blocking the event loop), answer JSON. No SQL here; every
database call is a public `Queue` method.

Routes (JSON unless said otherwise; every error is `{"error": code, "message": text}` with a 4xx/5xx):

    POST /q/{queue}                     push the request body as is         201 {"id", "queue"}
         ?delay=S&unique_key=K&if_exists=raise|ignore&max_attempts=N        409 duplicate, 413 too large
         &concurrency_key=K&max_running=N&priority=N
    GET  /q/{queue}[?wait=S]            pop (at-most-once): 200 raw body, X-Mqlite-Id / -Attempts / -Priority; 204
    POST /q/{queue}/claim               claim (at-least-once)               200 {"id", "body", "encoding",
         ?lease=S&wait=S&encoding=auto|base64                                     "attempts", "receipt", …}; 204
    POST /messages/{id}/ack|nack|release|fail|extend|checkpoint             200; 409 when the claim is gone
         receipt in X-Mqlite-Receipt or the JSON body {"receipt", "error", "delay", "lease", "cursor", "progress"}
                                        extend/checkpoint of a cancelled message: 409 {"error": "cancelled"}
    POST /messages/{id}/cancel?queue=Q  cancel: 200 {"result": "cancelled (was ready)" | "cancelling"}; 404
    GET  /q/{queue}/history[?outcome=O&since=S&limit=N]   finished messages, newest first (history on)
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

The routes live in `routes_messages` (push, pop, claim, settling), `routes_admin` (failed
messages, control, stats, metrics) and `page`; what they share (the queue, waiters, leases, the
stats cache) is one `state.Api` on `app.state.api`. Requests are read by `parsing`, answers shaped
by `shapes`, and exceptions turned into error JSON by `handlers`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..queue import Queue
from . import DEFAULT_MAX_BODY, routes_admin, routes_messages
from .handlers import HANDLERS
from .page import HERE, page
from .security import SecurityHeaders
from .state import Api

ROUTES = [
    Route("/", page, methods=["GET"]),
    Route("/stats", routes_admin.stats_all, methods=["GET"]),
    Route("/stats/{queue}", routes_admin.stats_one, methods=["GET"]),
    Route("/metrics", routes_admin.prometheus, methods=["GET"]),
    Route("/q/{queue}", routes_messages.push, methods=["POST"]),
    Route("/q/{queue}", routes_messages.pop, methods=["GET"]),
    Route("/q/{queue}/claim", routes_messages.claim, methods=["POST"]),
    Route("/q/{queue}/failed", routes_admin.failed, methods=["GET"]),
    Route("/q/{queue}/failed/retry", routes_admin.retry, methods=["POST"]),
    Route("/q/{queue}/failed/purge", routes_admin.purge, methods=["POST"]),
    Route("/q/{queue}/history", routes_admin.history, methods=["GET"]),
    Route("/messages/{id:int}/{action:str}", routes_messages.settle, methods=["POST"]),
    Route("/control/{queue}/{action:str}", routes_admin.control, methods=["POST"]),
    Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
]


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
    api = Api(queue, token=token, max_body=max_body, stats_ttl=stats_ttl, max_queues=max_queues,
              lease_sweep=lease_sweep, refresh=refresh)
    app = Starlette(routes=ROUTES, lifespan=_lifespan, exception_handlers=HANDLERS)
    app.state.api = api
    app.state.arrivals = api.arrivals  # long-polls asleep and claims held: what tests and metrics look at
    app.state.leases = api.leases
    if loopback_only is None:
        loopback_only = token is None
    app.add_middleware(SecurityHeaders, allowed_hosts=allowed_hosts, loopback_only=loopback_only)
    return app


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    """While the app serves: the keeper of HTTP claims' leases runs. After: the library's threads stop."""
    keeper = asyncio.create_task(app.state.api.leases.run())
    try:
        yield
    finally:
        keeper.cancel()
        try:
            await keeper
        except asyncio.CancelledError:
            pass
        await app.state.api.aq.aclose()  # the Queue is the caller's: it stays open
