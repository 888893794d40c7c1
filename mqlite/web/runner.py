"""`mqlite web`: build the Queue and the app, refuse unsafe binds, run uvicorn until a signal."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from ..config import DEFAULT_TABLE
from ..errors import MqliteError, SchemaMissing
from ..queue import Queue
from . import DEFAULT_MAX_BODY
from .app import create_app
from .security import is_loopback

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
        # Bound to loopback, only loopback Host names are served, token or not (no DNS rebinding).
        app = create_app(queue, token=token, max_body=max_body, loopback_only=is_loopback(host))
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
        with _signals_end_the_run():
            server.run()
        if not server.started:
            raise WebError(f"could not listen on {host}:{port} (see the error above)")
    finally:
        queue.close()  # flushes the processed/failed counters; claim sessions close


@contextmanager
def _signals_end_the_run() -> Iterator[None]:
    """uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again under the
    handlers it found. Found handlers that only take note let `serve` return normally, so the
    Queue is closed (counters flushed) and the command exits 0."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _log_to_stderr(level: str) -> None:
    logger = logging.getLogger("mqlite")
    if not any(getattr(h, "_mqlite_web", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        handler._mqlite_web = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level.upper())
