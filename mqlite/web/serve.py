"""`mqlite web`: build the Queue and the app, refuse unsafe binds, run uvicorn until a signal."""

from __future__ import annotations

import logging
import sys

import uvicorn

from ..config import DEFAULT_TABLE
from ..errors import MqliteError, SchemaMissing
from ..queue import Queue
from .app import DEFAULT_MAX_BODY, create_app, is_loopback

log = logging.getLogger("mqlite.web")


class WebError(MqliteError):
    """The web server cannot start as asked (unsafe bind, port in use)."""


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token."""
    if not is_loopback(host) and not token:
        raise WebError(
            f"refusing to listen on {host!r} without a token: pass --token or set MQLITE_WEB_TOKEN "
            "(or listen on 127.0.0.1)"
        )


def serve(
    dsn: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    token: str | None = None,
    table: str = DEFAULT_TABLE,
    max_body: int = DEFAULT_MAX_BODY,
    pool_size: int = 20,
    log_level: str = "info",
) -> None:
    """Serve the API, the status page and /metrics until SIGINT/SIGTERM. Raises MqliteError."""
    token = token or None
    check_bind(host, token)
    queue = Queue(dsn, table=table, pool_size=pool_size)
    try:
        status = queue.schema_status()
        if status.pending:
            raise SchemaMissing(
                f"table {table} is at schema version {status.version} with {len(status.pending)} migration(s) "
                "pending: run `mqlite schema apply` first"
            )
        _log_to_stderr(log_level)
        app = create_app(queue, token=token, max_body=max_body)
        config = uvicorn.Config(
            app, host=host, port=port, log_level=log_level, server_header=False, proxy_headers=False,
            timeout_graceful_shutdown=5, lifespan="on",
        )
        server = uvicorn.Server(config)
        shown = f"[{host}]" if ":" in host else host
        log.info(
            "mqlite web on http://%s:%d/ over %s, table %s, writes %s", shown, port, queue.settings.redacted(),
            table, "need the bearer token" if token else "open to this machine only (no token)",
        )
        server.run()
        if not server.started:
            raise WebError(f"could not listen on {host}:{port} (see the error above)")
    finally:
        queue.close()


def _log_to_stderr(level: str) -> None:
    logger = logging.getLogger("mqlite")
    if not any(getattr(h, "_mqlite_web", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        handler._mqlite_web = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level.upper())
