"""`mqlite schema apply|status`: create, upgrade and inspect the messages table."""

from __future__ import annotations

from ..config import DEFAULT_TABLE
from .app import Dsn, JsonOpt, TableOpt, WaitOpt, command, open_queue, schema_app
from .render import out, print_json


@command(schema_app, "apply")
def schema_apply(
    dsn: Dsn = None,
    wait: WaitOpt = None,
    table: TableOpt = DEFAULT_TABLE,
    as_json: JsonOpt = False,
) -> None:
    """Create or upgrade the messages table (idempotent)."""
    with open_queue(dsn, table, wait=wait) as q:
        applied = q.apply_schema()
        version = q.schema_status().version
    if as_json:
        print_json({"table": table, "applied": [m.version for m in applied], "version": version})
    elif applied:
        for m in applied:
            out.print(f"applied {m.version:03d}_{m.name}")
        out.print(f"{table}: schema at version {version}")
    else:
        out.print(f"{table}: schema already at version {version}, nothing to do")


@command(schema_app, "status")
def schema_status(
    dsn: Dsn = None,
    wait: WaitOpt = None,
    table: TableOpt = DEFAULT_TABLE,
    as_json: JsonOpt = False,
) -> None:
    """Show the schema version of the messages table and the migration files not applied yet."""
    with open_queue(dsn, table, wait=wait, pool_size=1) as q:
        status = q.schema_status()
    if as_json:
        print_json({
            "table": table,
            "version": status.version,
            "applied": [{"version": v, "name": n, "applied_at": at} for v, n, at in status.applied],
            "pending": [f"{m.version:03d}_{m.name}" for m in status.pending],
        })
        return
    if status.applied:
        v, name, at = status.applied[-1]
        out.print(f"{table}: schema version {v} ({v:03d}_{name}, applied {at:%Y-%m-%d %H:%M:%S})")
    else:
        out.print(f"{table}: no schema applied yet")
    if status.pending:
        names = ", ".join(f"{m.version:03d}_{m.name}" for m in status.pending)
        out.print(f"pending: {names} (run `mqlite schema apply`)", highlight=False)
    else:
        out.print("pending: none")
