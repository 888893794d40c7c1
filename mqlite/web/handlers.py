"""The app's exception handlers: every exception a route can raise answered as the API's error JSON."""

from __future__ import annotations

import logging
import traceback
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..config import redact
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
from .errors import ApiError, error_response
from .state import api

log = logging.getLogger("mqlite.web")


def _redacted(request: Request, text: str) -> str:
    return redact(text, api(request).queue.settings)


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    message = {404: "no such route", 405: "method not allowed on this route"}.get(exc.status_code, str(exc.detail))
    return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), message, dict(exc.headers or {}))


async def library_error(request: Request, exc: Exception) -> Response:
    text = _redacted(request, str(exc))
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
    return error_response(400, "bad_request", _redacted(request, str(exc)))


async def internal_error(request: Request, exc: Exception) -> Response:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    log.error("mqlite web: %s %s failed:\n%s", request.method, request.url.path, _redacted(request, tb))
    return error_response(500, "internal", "internal error (see the server's log)")


HANDLERS: dict[Any, Any] = {
    ApiError: api_error,
    HTTPException: http_error,
    MqliteError: library_error,
    ValueError: value_error,
    Exception: internal_error,
}
