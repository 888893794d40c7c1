"""Who may use the API: the bearer token, same-origin browsers, loopback Host names; the headers
every response carries. Kept apart from the routes so the rules can be read in one place."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as AsgiMessage

from .errors import ApiError, error_response


class Guard:
    """Who may write: the bearer token (constant-time comparison), else same-origin browsers only."""

    def __init__(self, token: str | None) -> None:
        self._digest = None if token is None else hashlib.sha256(token.encode("utf-8")).digest()

    @property
    def required(self) -> bool:
        return self._digest is not None

    def check(self, request: Request) -> None:
        if self._digest is None:
            _refuse_cross_site(request)
            return
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        # Starlette decodes headers as latin-1: encoding back gives the bytes sent (a UTF-8 token works).
        offered = hashlib.sha256(credential.strip().encode("latin-1", "replace")).digest()
        # Both sides hashed first: equal lengths, so neither the token nor its length leaks by timing.
        if not (hmac.compare_digest(offered, self._digest) and scheme.lower() == "bearer"):
            missing = not request.headers.get("authorization")
            raise ApiError(
                401, "unauthorized",
                "this route needs Authorization: Bearer <token>" if missing else "wrong token",
                headers={"WWW-Authenticate": 'Bearer realm="mqlite"'},
            )


def _refuse_cross_site(request: Request) -> None:
    """Without a token, a page of another site must not write through the operator's browser (CSRF)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise ApiError(403, "cross_site", f"writes from a {site} page are refused")
    origin = request.headers.get("origin")
    if origin is not None:
        host = request.headers.get("host", "").lower()
        if origin == "null" or urlsplit(origin).netloc.lower() != host:
            raise ApiError(403, "cross_site", "writes from another origin are refused")


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or address, maybe `[v6]`) can only be reached from this machine."""
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SecurityHeaders:
    """ASGI middleware: the Host check, and headers every response gets (no sniffing, no caching,
    no framing; the page's Content-Security-Policy allows only its own script and style)."""

    CSP = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    )

    def __init__(self, app: ASGIApp, allowed_hosts: list[str] | None, loopback_only: bool) -> None:
        self.app = app
        self.allowed = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}
        self.loopback_only = loopback_only

    def _host_ok(self, scope: Scope) -> bool:
        if self.allowed is None and not self.loopback_only:
            return True
        host = ""
        for name, value in scope.get("headers", []):
            if name == b"host":
                host = value.decode("latin-1")
                break
        name = urlsplit("//" + host).hostname or ""
        if self.allowed is not None:
            return "*" in self.allowed or name in self.allowed
        return is_loopback(name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._host_ok(scope):
            response = error_response(421, "bad_host", "this server answers only to its own host names")
            await response(scope, receive, send)
            return

        async def sending(message: AsgiMessage) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                    (b"cache-control", b"no-store"),
                    (b"content-security-policy", self.CSP.encode()),
                ]
            await send(message)

        await self.app(scope, receive, sending)
