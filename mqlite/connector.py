"""Opening connections: failover along the DSN's host list, TLS as the DSN asks, and the mapping
of driver errors onto mqlite's.

TLS goes through mysqlclient's `ssl_mode` and `ssl={ca, cert, key}` (Settings.connect_kwargs).
Built on MariaDB Connector/C (as on Debian and Ubuntu), mysqlclient has no MYSQL_OPT_SSL_MODE and
emulates it: REQUIRED turns TLS on but goes on in plain text with a server that offers none. So a
connection whose DSN requires TLS is checked to be encrypted once opened.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import MySQLdb

from . import sql
from .config import Settings, redact
from .errors import (
    CertificateRejected,
    ConfigError,
    DatabaseError,
    MqliteError,
    PayloadTooLarge,
    SchemaMissing,
    TlsRequired,
    Unavailable,
)
from .retry import CANNOT_CONNECT, CONNECTION_LOST, LOCK_CONFLICT, TRANSIENT

log = logging.getLogger("mqlite")

_TLS_FAILED = 2026  # CR_SSL_CONNECTION_ERROR


def session_cipher(cur: Any) -> str | None:
    """The TLS cipher of the cursor's session, or None when it is not encrypted."""
    cur.execute(sql.SESSION_CIPHER)
    row = cur.fetchone()
    return str(row[1]) if row and row[1] else None


class Connector:
    """Opens connections, failing over along the DSN's host list.

    routing="single": every connection goes to the current primary (the first host that answers,
    in DSN order); when it stops answering, the next one becomes primary. This is what a
    Galera or Group Replication cluster wants by default: one writer, no certification conflicts.
    routing="spread": new connections go round the hosts (multi-primary).
    """

    def __init__(self, settings: Settings, kwargs: dict[str, Any], routing: str) -> None:
        self.settings = settings
        self.kwargs = kwargs  # for MySQLdb.connect, the host of the first listed
        self.routing = routing
        self.primary = 0
        self._turn = 0
        self._lock = threading.Lock()
        self._checked = False

    def __call__(self, **extra: Any) -> Any:
        hosts = self.settings.hosts
        if len(hosts) <= 1 or self.settings.unix_socket:
            return self._open({**self.kwargs, **extra})
        if not self._checked:
            self.check_nodes()
        with self._lock:
            if self.routing == "spread":
                self._turn += 1
                start = self._turn % len(hosts)
            else:
                start = self.primary
        error: MySQLdb.Error | None = None
        for step in range(len(hosts)):
            index = (start + step) % len(hosts)
            try:
                conn = self._open({**self.kwargs, **extra, **_host_kwargs(hosts[index])})
            except MySQLdb.Error as exc:
                error = exc
                continue
            if self.routing == "single" and index != self.primary:
                with self._lock:
                    self.primary = index
                log.warning("%s:%s is now the primary (after %s:%s stopped answering)", *hosts[index],
                            *hosts[start])
            conn._mqlite_host = index  # which host, should it fail later (see lost())
            return conn
        assert error is not None
        raise error

    def _open(self, kwargs: dict[str, Any]) -> Any:
        conn = MySQLdb.connect(**kwargs)
        if self.settings.tls_enforced:
            try:
                cur = conn.cursor()
                cipher = session_cipher(cur)
                cur.close()
            except BaseException:
                conn.close()
                raise
            if cipher is None:
                conn.close()
                where = f"{kwargs['host']}:{kwargs['port']}" if "host" in kwargs else self.settings.where
                raise TlsRequired(
                    f"{where} does not offer TLS, and the DSN asks for ssl_mode={self.settings.ssl_mode}: "
                    "the connection was closed unused (enable TLS on the server: ssl_cert, ssl_key)"
                )
        return conn

    def lost(self, index: int | None) -> None:
        """A connection to host `index` failed: if it was the primary, the next host takes over
        (a node that still accepts connections but refuses statements must not stay primary)."""
        hosts = self.settings.hosts
        if index is None or len(hosts) <= 1 or self.routing != "single":
            return
        with self._lock:
            if self.primary == index:
                self.primary = (index + 1) % len(hosts)

    def check_nodes(self) -> None:
        """Refuse a host list in which two servers report the same node identity (sql.NODE)."""
        seen: dict[int, str] = {}
        for host in self.settings.hosts:
            try:
                conn = self._open({**self.kwargs, **_host_kwargs(host)})
            except MySQLdb.Error:
                continue  # unreachable now: checked when it is first used
            try:
                cur = conn.cursor()
                cur.execute(sql.NODE_IDENTITY)
                node, identity = cur.fetchone()
            finally:
                conn.close()
            where = f"{host[0]}:{host[1]}"
            if int(node) in seen:
                raise ConfigError(
                    f"{seen[int(node)]} and {where} report the same node identity ({identity}): claims made "
                    "on one could be read on the other; give each node its own host name or port"
                )
            seen[int(node)] = where
        self._checked = True

    def refused_for_want_of_tls(self, exc: MySQLdb.Error) -> TlsRequired | None:
        """After the server denied a login made without TLS: TlsRequired if the same login succeeds
        over TLS (the account is `REQUIRE SSL`), else None. One more connection, on a failure path."""
        if _code(exc) != 1045 or self.settings.tls_enforced:
            return None
        kwargs = {**self.kwargs, "ssl_mode": "REQUIRED"}
        if len(self.settings.hosts) > 1 and not self.settings.unix_socket:
            kwargs.update(_host_kwargs(self.settings.hosts[self.primary]))
        try:
            MySQLdb.connect(**kwargs).close()
        except MySQLdb.Error:
            return None
        return TlsRequired(
            f"{self.settings.where} requires TLS for user {self.settings.user!r} (the account is REQUIRE SSL), "
            "and the DSN does not ask for it: add ssl_mode=VERIFY_IDENTITY&ssl_ca=/path/to/ca.pem to the DSN "
            "(or ssl_mode=REQUIRED, which does not check the server's certificate)"
        )


def _host_kwargs(host: tuple[str, int]) -> dict[str, Any]:
    return {"host": host[0], "port": host[1]}


def _code(exc: BaseException) -> int:
    return exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0


def translate(exc: BaseException, settings: Settings | None) -> MqliteError:
    """Map a MySQLdb exception onto the mqlite error hierarchy."""
    code = _code(exc)
    text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    text = redact(text, settings)
    where = settings.where if settings else "server"
    if code == _TLS_FAILED:
        return _tls_failed(text, settings, where)
    if isinstance(exc, MySQLdb.InterfaceError) or code in CONNECTION_LOST:
        return Unavailable(f"lost connection to {where} ({code}: {text or 'connection closed'})")
    if code in CANNOT_CONNECT:
        return Unavailable(f"cannot connect to {where} ({code}: {text})")
    if code in (1045, 1044, 1049, 2005, 1698):
        err = Unavailable(f"cannot use {where} ({code}: {text})")
        err.transient = False
        return err
    if code == 1146:
        return SchemaMissing(f"{text}: run `mqlite schema apply`")
    if code == 1054:
        return SchemaMissing(f"the table is older than this mqlite ({text}): run `mqlite schema apply`")
    if code in (1153, 1301):
        return PayloadTooLarge(f"statement larger than the server's max_allowed_packet ({code}: {text})")
    transient = code in TRANSIENT or code in LOCK_CONFLICT
    return DatabaseError(f"server error {code}: {text}", code=code, transient=transient)


def _tls_failed(text: str, settings: Settings | None, where: str) -> MqliteError:
    mode = settings.ssl_mode if settings else None
    lowered = text.lower()
    if "does not support" in lowered:  # Connector/C: "SSL is required, but the server does not support it"
        return TlsRequired(f"{where} does not offer TLS, and the DSN asks for ssl_mode={mode} ({_TLS_FAILED}: {text})")
    if "validation of ssl server certificate failed" in lowered:  # Connector/C's host name check
        host = settings.hosts[0][0] if settings and settings.hosts else "the host"
        return CertificateRejected(
            f"the certificate of {where} failed the host name check of ssl_mode={mode}: it does not name "
            f"{host} ({_TLS_FAILED}: {text})"
        )
    if "certificate" in lowered or "verify" in lowered or "issuer" in lowered:
        ca = settings.ssl_ca if settings else None
        return CertificateRejected(
            f"the certificate of {where} failed the certificate check of ssl_mode={mode} against "
            f"ssl_ca={ca} ({_TLS_FAILED}: {text})"
        )
    # A handshake cut short (a network fault, a server restarting) may pass.
    return Unavailable(f"TLS with {where} failed ({_TLS_FAILED}: {text})")
