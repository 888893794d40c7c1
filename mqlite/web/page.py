"""The HTML status page (`GET /`): depth of every queue, the last failures (each with Retry and Cancel)
and the newest finished messages of queues keeping history; polled by `static/status.js`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from .parsing import allow_params
from .shapes import failed_json
from .state import api

HERE = Path(__file__).resolve().parent
PAGE_FAILED_QUEUES = 20  # queues whose failed messages the page lists
PAGE_FAILED_PER_QUEUE = 20
PAGE_HISTORY_PER_QUEUE = 10  # newest finished messages listed per queue whose history is on

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(HERE / "templates")),
    autoescape=True,  # every template, whatever its name: bodies and errors are user data
    undefined=jinja2.StrictUndefined,
)


async def page(request: Request) -> Response:
    allow_params(request)
    a = api(request)
    s = await a.stats.get()
    with_failures = [n for n, v in s.queues.items() if v.failed][:PAGE_FAILED_QUEUES]
    listed = [  # one after the other: the page must not take a pool connection per queue at once
        await a.aq.peek(n, PAGE_FAILED_PER_QUEUE, failed=True) for n in with_failures
    ]
    history = {}
    for n in list(s.queues)[:PAGE_FAILED_QUEUES]:
        if await a.aq.history_days(n) is not None:
            history[n] = await a.aq.history(n, limit=PAGE_HISTORY_PER_QUEUE)
    biggest = max((v.ready + v.delayed + v.claimed + v.failed for v in s.queues.values()), default=0)
    html = _templates.get_template("index.html").render(
        table=a.queue.table, queues=list(s.queues.values()), failed=dict(zip(with_failures, listed, strict=True)),
        preview=lambda m: failed_json(m)["body_preview"], age=_age, biggest=max(biggest, 1),
        auth_required=a.guard.required, refresh_ms=int(a.refresh * 1000),
        sees_all=s.sees_all_connections, history=history, now=datetime.now().strftime("%H:%M:%S"),
    )
    return HTMLResponse(html)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"
