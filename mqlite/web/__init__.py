"""`mqlite web`: a presque-style HTTP API, a live status page and Prometheus metrics over one Queue.

Optional: needs `pip install 'mqlite[web]'` (Starlette, uvicorn, prometheus-client, Jinja2). This
module imports none of them itself, so `missing()` can say what is absent; `create_app` and
`serve` load them on first use.

    from mqlite.web import create_app
    app = create_app(mqlite.Queue(dsn), token="s3cret", max_body=1 << 20)   # any ASGI server
"""

from __future__ import annotations

import importlib
from typing import Any

EXTRA_HINT = "pip install 'mqlite[web]'"
DEFAULT_MAX_BODY = 1 << 20  # bytes: the largest message body the API accepts unless told otherwise
# Import names of the packages the web extra installs.
DEPENDENCIES = ("starlette", "uvicorn", "prometheus_client", "jinja2")


def missing() -> str | None:
    """The first package of the web extra that cannot be imported, or None when all can."""
    for name in DEPENDENCIES:
        try:
            importlib.import_module(name)
        except ImportError:
            return name
    return None


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "serve":
        from .runner import serve

        return serve
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DEFAULT_MAX_BODY", "EXTRA_HINT", "DEPENDENCIES", "missing", "create_app", "serve"]
