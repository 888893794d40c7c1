"""Applying mqlite's schema on a Django connection (the app's migration)."""

from __future__ import annotations

from typing import Any

from ... import schema
from . import conf


def apply_on(connection: Any) -> list[schema.Migration]:
    """Apply the pending schema files of the configured table on Django's `connection`, if it is
    the configured alias (`migrate --database=other` leaves the other databases alone)."""
    cfg = conf.config()
    if connection.alias != cfg.database:
        return []
    connection.ensure_connection()
    return schema.apply(connection.connection, cfg.table)
