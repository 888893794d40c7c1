"""The `MQLITE` setting, and the DSN of the Django database it names.

    MQLITE = {
        "DATABASE": "default",        # the alias whose transactions pushes join; the table lives there
        "TABLE": "mqlite_messages",   # Queue(table=…)
        "DSN": None,                  # default: built from DATABASES[DATABASE]
        "OPTIONS": {},                # other Queue(…) arguments: pool_size, retry_for, max_attempts, …
    }

No `MQLITE` setting at all: the `default` alias and the default table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

from ...config import DEFAULT_PORT, DEFAULT_TABLE, Settings, check_table
from ...errors import MqliteError

_KEYS = ("DATABASE", "TABLE", "DSN", "OPTIONS")
_QUEUE_OPTIONS = ("pool_size", "connect_timeout", "checkout_timeout", "retry_for", "max_attempts", "backoff",
                  "recover_every", "routing")


@dataclass(frozen=True)
class Config:
    database: str = "default"
    table: str = DEFAULT_TABLE
    dsn: str | None = field(default=None, repr=False)
    options: dict[str, Any] = field(default_factory=dict)


def config() -> Config:
    """The `MQLITE` setting, checked; ImproperlyConfigured says what is wrong."""
    given = getattr(django_settings, "MQLITE", None) or {}
    if not isinstance(given, dict):
        raise ImproperlyConfigured("MQLITE must be a dict")
    unknown = sorted(set(given) - set(_KEYS))
    if unknown:
        raise ImproperlyConfigured(f"MQLITE has unknown keys {unknown} (known: {', '.join(_KEYS)})")
    options = dict(given.get("OPTIONS") or {})
    wrong = sorted(set(options) - set(_QUEUE_OPTIONS))
    if wrong:
        raise ImproperlyConfigured(f"MQLITE['OPTIONS'] has unknown keys {wrong} (known: {', '.join(_QUEUE_OPTIONS)})")
    cfg = Config(given.get("DATABASE", "default"), given.get("TABLE", DEFAULT_TABLE), given.get("DSN"), options)
    if cfg.database not in django_settings.DATABASES:
        raise ImproperlyConfigured(f"MQLITE['DATABASE'] is {cfg.database!r}, which is not in DATABASES")
    try:
        check_table(cfg.table)
    except MqliteError as exc:
        raise ImproperlyConfigured(f"MQLITE['TABLE']: {exc}") from None
    return cfg


def database_dsn(alias: str) -> str:
    """The mqlite DSN of Django's database `alias` (its MySQL backend settings)."""
    from django.db import connections

    if connections[alias].vendor != "mysql":
        raise ImproperlyConfigured(
            f"mqlite needs a MySQL/MariaDB database; DATABASES[{alias!r}] uses {connections[alias].vendor}"
        )
    db = connections[alias].settings_dict
    options = db.get("OPTIONS") or {}
    host = db.get("HOST") or ""
    socket = host if host.startswith("/") else options.get("unix_socket")
    port = int(db.get("PORT") or options.get("port") or DEFAULT_PORT)
    settings = Settings(
        user=db.get("USER") or options.get("user") or "root",
        password=db.get("PASSWORD") or options.get("password") or "",
        # Like mysqlclient (and so Django): no host is the local server.
        hosts=(("localhost", DEFAULT_PORT),) if socket else ((host or "localhost", port),),
        database=db.get("NAME") or options.get("database") or "",
        unix_socket=socket,
    )
    if not settings.database:
        raise ImproperlyConfigured(f"DATABASES[{alias!r}] names no database (NAME)")
    return settings.url()
