"""Versioned schema: find `schema/NNN_name.sql`, apply the pending ones in order, record each.

Applying is idempotent (applied versions are recorded per messages table in
`mqlite_schema_version`) and serialised across processes with a named server lock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import sql
from .config import check_table
from .errors import MqliteError, SchemaMissing

if TYPE_CHECKING:
    from pathlib import Path

_FILE_RE = re.compile(r"^(\d{3})_([A-Za-z0-9_]+)\.sql$")
# As in the mysql client: statements end with `;` until a `DELIMITER //` line says otherwise, so a
# routine body (which holds `;`) can be one statement.
_DELIMITER_RE = re.compile(r"^\s*DELIMITER\s+(\S+)\s*$", re.IGNORECASE)
_LOCK_TIMEOUT = 30


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    def statements(self, table: str) -> list[str]:
        """The file's statements with `{table}` and `{push_procedure}` filled in (comments dropped,
        split on `;` or on the delimiter a `DELIMITER` line sets)."""
        text = self.path.read_text(encoding="utf-8")
        text = text.replace("{table}", f"`{check_table(table)}`")
        text = text.replace("{push_procedure}", f"`{sql.push_procedure(table)}`")
        return split_statements(text)


def split_statements(text: str) -> list[str]:
    """The statements of a migration file's text, comment lines (`--`) dropped."""
    found: list[str] = []
    section: list[str] = []
    delimiter = ";"
    for line in text.splitlines():
        if line.lstrip().startswith("--"):
            continue
        m = _DELIMITER_RE.match(line)
        if m:
            found += _cut("\n".join(section), delimiter)
            section, delimiter = [], m.group(1)
        else:
            section.append(line)
    return found + _cut("\n".join(section), delimiter)


def _cut(text: str, delimiter: str) -> list[str]:
    return [s.strip() for s in text.split(delimiter) if s.strip()]


@dataclass(frozen=True)
class SchemaStatus:
    """Where a messages table stands: versions applied (with times) and files still pending."""

    table: str
    applied: list[tuple[int, str, datetime]]
    pending: list[Migration]

    @property
    def version(self) -> int:
        return self.applied[-1][0] if self.applied else 0


def schema_dir() -> Path:
    """The folder of migration files: inside the installed package, else the repository's `schema/`."""
    from pathlib import Path  # on use: `import mqlite` need not load pathlib

    here = Path(__file__).resolve().parent
    for candidate in (here / "_schema", here.parent / "schema"):
        if candidate.is_dir():
            return candidate
    raise SchemaMissing(f"no schema files found next to {here}")


def migrations() -> list[Migration]:
    """Every migration file, in version order."""
    found = []
    for path in sorted(schema_dir().iterdir()):
        m = _FILE_RE.match(path.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MqliteError(f"two schema files share a version number in {schema_dir()}")
    return found


def latest_version() -> int:
    return migrations()[-1].version


def status(conn: Any, table: str) -> SchemaStatus:
    """The applied and pending migrations of `table` (reads only)."""
    cur = conn.cursor()
    try:
        cur.execute(sql.VERSION_TABLE_EXISTS, ("mqlite_schema_version",))
        applied: list[tuple[int, str, datetime]] = []
        if cur.fetchone()[0]:
            cur.execute(sql.APPLIED_VERSIONS, (table,))
            applied = [(int(v), n, at) for v, n, at in cur.fetchall()]
    finally:
        cur.close()
    done = {v for v, _, _ in applied}
    return SchemaStatus(table, applied, [m for m in migrations() if m.version not in done])


def apply(conn: Any, table: str, upto: int | None = None) -> list[Migration]:
    """Apply the pending migrations of `table` in order (up to version `upto`); returns those applied."""
    check_table(table)
    lock = f"mqlite_schema:{table}"
    cur = conn.cursor()
    try:
        cur.execute(sql.SCHEMA_LOCK, (lock, _LOCK_TIMEOUT))
        if cur.fetchone()[0] != 1:
            raise MqliteError(f"another `schema apply` held the lock {lock!r} for {_LOCK_TIMEOUT}s")
        try:
            cur.execute(sql.CREATE_VERSION_TABLE)
            applied = []
            for migration in status(conn, table).pending:
                if upto is not None and migration.version > upto:
                    break
                # DDL commits implicitly in MySQL; each file is written so that it is one ALTER or
                # CREATE plus idempotent data fixes, recorded only once all of it succeeded.
                for statement in migration.statements(table):
                    cur.execute(statement)
                cur.execute(sql.RECORD_VERSION, (table, migration.version, migration.name))
                applied.append(migration)
            return applied
        finally:
            cur.execute(sql.SCHEMA_UNLOCK, (lock,))
            cur.fetchall()
    finally:
        cur.close()


def drop(conn: Any, table: str) -> None:
    """Drop a messages table and forget its versions (benchmarks and tests clean up with this)."""
    cur = conn.cursor()
    try:
        cur.execute(sql.statements(table).drop_table)
        cur.execute(sql.statements(table).drop_push_procedure)
        cur.execute(sql.CREATE_VERSION_TABLE)
        cur.execute(sql.FORGET_VERSIONS, (table,))
        cur.execute(sql.VERSION_TABLE_EXISTS, ("mqlite_history",))
        if cur.fetchone()[0]:
            cur.execute(sql.FORGET_HISTORY, (table,))
        cur.execute(sql.VERSION_TABLE_EXISTS, ("mqlite_schedules",))
        if cur.fetchone()[0]:
            cur.execute(sql.FORGET_SCHEDULES, (table,))
    finally:
        cur.close()
