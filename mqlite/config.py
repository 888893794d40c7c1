"""DSN parsing, name validation and password redaction. No I/O here, beyond checking that the
TLS files a DSN names can be read."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import parse_qsl, unquote

from .errors import ConfigError, InvalidName

DSN_ENV = "MQLITE_DSN"
DEFAULT_TABLE = "mqlite_messages"
DEFAULT_PORT = 3306
QUEUE_NAME_MAX = 191  # utf8mb4 VARCHAR(191) keeps the pop index under InnoDB's 767-byte key prefix limit
KEY_MAX = QUEUE_NAME_MAX  # unique_key and concurrency_key: indexed utf8mb4 VARCHARs like the queue name
COUNT_MAX = 65535  # max_attempts and max_running: SMALLINT UNSIGNED columns
CURSOR_MAX = 16_000  # characters of a checkpoint's cursor (a TEXT column; a cursor is a position, not data)
DEFAULT_LEASE = 30.0  # seconds a claim is held before recovery may hand it out again

_TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_SCHEMES = ("mysql", "mariadb")
# Query options a DSN may carry, with the type each must parse as.
_OPTIONS: dict[str, type] = {
    "unix_socket": str,
    "connect_timeout": float,
    "read_timeout": float,
    "write_timeout": float,
    "routing": str,  # several hosts: "single" (one primary at a time, the default) or "spread"
    "ssl_mode": str,
    "ssl_ca": str,
    "ssl_cert": str,
    "ssl_key": str,
}
# MySQL's names for how much TLS a connection insists on, weakest first.
SSL_MODES = ("DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")
TLS_ENFORCED = ("REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")
_TLS_FILES = ("ssl_ca", "ssl_cert", "ssl_key")


@dataclass(frozen=True)
class Settings:
    """A parsed DSN. `password` is kept out of `repr` and `redacted()`."""

    user: str
    password: str = field(repr=False)
    hosts: tuple[tuple[str, int], ...]
    database: str
    unix_socket: str | None = None
    connect_timeout: float | None = None
    read_timeout: float | None = None
    write_timeout: float | None = None
    routing: str = "single"
    ssl_mode: str | None = None  # None: the driver's default (see README, "TLS")
    ssl_ca: str | None = None
    ssl_cert: str | None = None
    ssl_key: str | None = None

    @property
    def where(self) -> str:
        """Where the server is, for error messages: `host:port` or the socket path."""
        if self.unix_socket:
            return self.unix_socket
        return ",".join(f"{h}:{p}" for h, p in self.hosts)

    def redacted(self) -> str:
        """The DSN with the password replaced by `***`."""
        auth = self.user + (":***" if self.password else "")
        hosts = "" if self.unix_socket and self.hosts == (("localhost", DEFAULT_PORT),) else self.where
        options = [f"unix_socket={self.unix_socket}"] if self.unix_socket else []
        options += [f"{name}={value}" for name, value in self._tls_options()]
        query = "?" + "&".join(options) if options else ""
        return f"mysql://{auth}@{hosts}/{self.database}{query}"

    def _tls_options(self) -> list[tuple[str, str]]:
        return [(name, getattr(self, name)) for name in ("ssl_mode", *_TLS_FILES) if getattr(self, name)]

    @property
    def tls_enforced(self) -> bool:
        """Whether the DSN refuses a connection without TLS."""
        return self.ssl_mode in TLS_ENFORCED

    def connect_kwargs(self, host_index: int = 0) -> dict[str, object]:
        """Keyword arguments for `MySQLdb.connect` (one host of the list)."""
        kwargs: dict[str, object] = {"user": self.user, "database": self.database}
        if self.password:
            kwargs["password"] = self.password
        if self.unix_socket:
            kwargs["unix_socket"] = self.unix_socket
        else:
            host, port = self.hosts[host_index]
            kwargs["host"], kwargs["port"] = host, port
        for name in ("connect_timeout", "read_timeout", "write_timeout"):
            value = getattr(self, name)
            if value is not None:
                # The driver takes whole seconds; round up so a small timeout never becomes "none".
                kwargs[name] = max(1, int(-(-value // 1)))
        if self.ssl_mode:
            kwargs["ssl_mode"] = _driver_ssl_mode(self.ssl_mode)
        files = {name[4:]: getattr(self, name) for name in _TLS_FILES if getattr(self, name)}
        if files:
            kwargs["ssl"] = files  # mysqlclient's names: ca, cert, key
        return kwargs

    def url(self) -> str:
        """The DSN back, password included (percent-encoded). Never log this; use `redacted()`."""
        from urllib.parse import quote

        auth = quote(self.user, safe="") + (":" + quote(self.password, safe="") if self.password else "")
        hosts = "" if self.unix_socket else ",".join(f"{h}:{p}" for h, p in self.hosts)
        options = [f"unix_socket={quote(self.unix_socket)}"] if self.unix_socket else []
        if self.routing != "single":
            options.append(f"routing={self.routing}")
        for name in ("connect_timeout", "read_timeout", "write_timeout"):
            if getattr(self, name) is not None:
                options.append(f"{name}={getattr(self, name):g}")
        options += [f"{name}={quote(value)}" for name, value in self._tls_options()]
        query = "?" + "&".join(options) if options else ""
        return f"mysql://{auth}@{hosts}/{quote(self.database, safe='')}{query}"

    def with_database(self, database: str) -> Settings:
        """The same server and credentials, another database."""
        return dataclasses.replace(self, database=database)


def resolve_dsn(dsn: str | None) -> str:
    """The DSN given, else `MQLITE_DSN`; ConfigError when neither is set."""
    if dsn:
        return dsn
    env = os.environ.get(DSN_ENV)
    if env:
        return env
    raise ConfigError(f"no DSN given and {DSN_ENV} is not set (expected mysql://user:pass@host:port/db)")


def parse_dsn(dsn: str) -> Settings:
    """Parse `mysql://user:pass@host:port/db` or `mysql:///db?unix_socket=/path`.

    Several hosts may be listed, comma-separated. Raises ConfigError; the message never
    contains the password.
    """
    if not isinstance(dsn, str):
        raise ConfigError(f"DSN must be a string, not {type(dsn).__name__}")
    scheme, sep, rest = dsn.partition("://")
    if not sep:
        raise ConfigError("DSN must look like mysql://user:pass@host:port/db")
    if scheme.lower() not in _SCHEMES:
        raise ConfigError(f"DSN scheme must be mysql:// (got {scheme[:20]!r}://)")
    # Split credentials off at the last '@' first, so an unencoded '/', '?' or '@' in a password
    # cannot be mistaken for the start of the path or query.
    userinfo, at, rest = rest.rpartition("@")
    rest, _, query = rest.partition("?")
    hostpart, _, path = rest.partition("/")
    user, _, password = userinfo.partition(":")
    user, password = unquote(user), unquote(password)
    database = unquote(path.strip("/"))
    if not database:
        raise ConfigError(f"DSN names no database (mysql://…@{hostpart}/DATABASE)")
    if "/" in database:
        raise ConfigError("DSN path must be a single database name")
    options: dict[str, object] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        kind = _OPTIONS.get(key)
        if kind is None:
            raise ConfigError(f"unknown DSN option {key!r} (known: {', '.join(_OPTIONS)})")
        if key in options and key.startswith("ssl_"):
            # Which of two would win is not obvious to a reader of the DSN; for TLS it matters.
            raise ConfigError(f"DSN option {key} is given twice")
        try:
            options[key] = kind(value)
        except ValueError:
            raise ConfigError(f"DSN option {key} must be a number, got {value!r}") from None
    if options.get("routing", "single") not in ("single", "spread"):
        raise ConfigError("DSN option routing must be single or spread")
    _check_tls(options)
    hosts = tuple(_parse_host(h) for h in hostpart.split(",")) if hostpart else ()
    if not hosts:
        if not options.get("unix_socket"):
            raise ConfigError("DSN names no host (mysql://user@HOST:PORT/db) and no ?unix_socket=")
        hosts = (("localhost", DEFAULT_PORT),)
    return Settings(user=user or "root", password=password, hosts=hosts, database=database, **options)  # type: ignore[arg-type]


def _driver_ssl_mode(mode: str) -> str:
    """`mode` as mysqlclient needs it said. Built on MariaDB Connector/C (which numbers its releases
    3.x), mysqlclient turns VERIFY_CA into the check VERIFY_IDENTITY makes (chain and host name),
    and Connector/C checks the chain alone whenever a CA is given: so VERIFY_CA, as MySQL defines
    it, is REQUIRED with the CA there (the VERIFY modes always carry one, see _check_tls)."""
    if mode != "VERIFY_CA":
        return mode
    import MySQLdb

    return "REQUIRED" if MySQLdb.get_client_info().startswith("3.") else mode


def _check_tls(options: dict[str, object]) -> None:
    """Validate (and normalise, in place) the TLS options of a DSN. Raises ConfigError."""
    for name in _TLS_FILES:
        if name in options:
            path = os.path.expanduser(str(options[name]))
            if not path:
                raise ConfigError(f"DSN option {name} is empty (expected the path of a PEM file)")
            if not os.path.isfile(path) or not os.access(path, os.R_OK):
                raise ConfigError(f"DSN option {name}: no readable file at {path}")
            options[name] = path
    mode = options.get("ssl_mode")
    if mode is not None:
        mode = str(mode).upper()
        if mode not in SSL_MODES:
            raise ConfigError(
                f"DSN option ssl_mode must be one of {', '.join(SSL_MODES)}, got {options['ssl_mode']!r:.40}"
            )
    elif "ssl_ca" in options:
        mode = "VERIFY_CA"  # a CA given is a CA checked: never a silently unverified connection
    if mode is not None:
        options["ssl_mode"] = mode
    if ("ssl_cert" in options) != ("ssl_key" in options):
        raise ConfigError("DSN options ssl_cert and ssl_key go together (the client certificate and its key)")
    if mode == "DISABLED" and any(name in options for name in _TLS_FILES):
        raise ConfigError("DSN has ssl_mode=DISABLED and TLS files (ssl_ca, ssl_cert, ssl_key): drop one or the other")
    if mode in ("VERIFY_CA", "VERIFY_IDENTITY") and "ssl_ca" not in options:
        raise ConfigError(
            f"DSN option ssl_mode={mode} needs ssl_ca=/path/to/ca.pem (the provider's CA bundle; for a "
            "certificate from a public CA, the system bundle, e.g. /etc/ssl/certs/ca-certificates.crt)"
        )


def _parse_host(text: str) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):  # [ipv6]:port
        host, _, port_text = text[1:].partition("]")
        port_text = port_text.lstrip(":")
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ConfigError("DSN has an empty host in its host list")
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"DSN port must be a number from 1 to 65535, got {port_text[:20]!r}")
    return host, int(port_text)


def check_table(name: str) -> str:
    """Return `name` if it is a safe table identifier, else raise InvalidName."""
    if not isinstance(name, str) or not _TABLE_RE.match(name):
        raise InvalidName(f"table name must match {_TABLE_RE.pattern}, got {name!r:.80}")
    return name


def check_queue(name: object) -> str:
    """Return `name` if it is a valid queue name (1–191 characters of UTF-8), else raise InvalidName."""
    if isinstance(name, bytes):
        try:
            name = name.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidName("queue name is not valid UTF-8") from None
    return _check_name(name, "queue name", QUEUE_NAME_MAX)


SCHEDULE_NAME_MAX = 128  # leaves room in a message's unique key for "schedule:<name>:<tick>"


def check_schedule_name(name: object) -> str:
    """`name` if it is a valid schedule name (1–128 characters of UTF-8), else InvalidName."""
    return _check_name(name, "schedule name", SCHEDULE_NAME_MAX)


def _check_name(name: object, what: str, limit: int) -> str:
    if not isinstance(name, str):
        raise InvalidName(f"{what} must be a string, not {type(name).__name__}")
    if not name:
        raise InvalidName(f"{what} is empty")
    if len(name) > limit:
        raise InvalidName(f"{what} is {len(name)} characters long (at most {limit})")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidName(f"{what} is not valid UTF-8 (lone surrogate)") from None
    if name.endswith(" "):
        # The server compares these columns with trailing spaces ignored (PAD SPACE): 'a' and
        # 'a ' would name the same queue, or collide as unique keys.
        raise InvalidName(
            f"{what} ends with a space ({name[-20:]!r}): the server ignores trailing spaces in comparisons"
        )
    return name


def redact(text: str, settings: Settings | None) -> str:
    """`text` with the password of `settings` (raw and percent-encoded) replaced by ***."""
    if settings is None or not settings.password:
        return text
    from urllib.parse import quote

    for secret in {settings.password, quote(settings.password, safe="")}:
        text = text.replace(secret, "***")
    return text


MAX_DELAY = 100 * 365 * 86400.0  # keeps NOW() + delay inside DATETIME's range


def delay_us(delay: float | None, run_at: datetime | None) -> int:
    """Microseconds from now for a `delay` in seconds or a `run_at` datetime (this machine's clock)."""
    if delay is not None and run_at is not None:
        raise ValueError("give delay or run_at, not both")
    if run_at is not None:
        if not isinstance(run_at, datetime):
            raise TypeError("run_at must be a datetime")
        now = datetime.now(timezone.utc) if run_at.tzinfo else datetime.now()
        delay = max(0.0, (run_at - now).total_seconds())
    if delay is None:
        return 0
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not math.isfinite(delay):
        raise ValueError(f"delay must be a number of seconds, got {delay!r}")
    if not 0 <= delay <= MAX_DELAY:
        raise ValueError(f"delay must be between 0 and {MAX_DELAY:.0f} seconds, got {delay}")
    return int(delay * 1e6)


def check_key(key: object, what: str) -> str | None:
    """`key` (a unique or concurrency key) if it is None or 1–191 characters of UTF-8, else InvalidName."""
    if key is None:
        return None
    return _check_name(key, what, KEY_MAX)


PRIORITY_MIN, PRIORITY_MAX = -32768, 32767  # the column is a SMALLINT


def check_priority(priority: object) -> int:
    """`priority` if it is an integer in the signed 16-bit range (lower runs first), else ConfigError."""
    if isinstance(priority, bool) or not isinstance(priority, int) or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise ConfigError(f"priority must be an integer from {PRIORITY_MIN} to {PRIORITY_MAX}, got {priority!r}")
    return priority


def check_count(n: int, what: str = "max_attempts") -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= COUNT_MAX:
        raise ValueError(f"{what} must be an integer from 1 to {COUNT_MAX}, got {n!r}")
    return n
