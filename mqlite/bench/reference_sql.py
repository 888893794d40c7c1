"""The benchmark's reference SQL: what a user would otherwise write, run next to mqlite's own.

Nothing in the library sends these. `mqlite bench --compare` runs them next to mqlite, with the
same bodies, so that mqlite's rates can be reported as ratios against plain SQL. They run on a
table of their own, of the Dwango shape (mqlite's schema/001): fixed here, so that a reference does
not move (or start sorting, and locking, a whole queue) when mqlite's schema changes. Also here:
seeding statements (delayed mqlite rows, huey's task table). Values are bound parameters; table
names are validated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from .. import sql
from ..config import check_table

GROUP = 64  # rows per bare group claim


@dataclass(frozen=True)
class ReferenceStatements:
    """The reference strategies' statements over one messages-shaped table."""

    table: str
    create: str
    drop: str
    # Push ceiling: one autocommit single-row INSERT per message (and its multi-row form).
    insert: str
    insert_many_head: str
    insert_many_row: str
    # The naive Dwango pop: every session claims `LIMIT 1` from the head, reads it back, deletes it.
    # It walks the queue's head in index order, as mqlite's claim does (the hint keeps it off a
    # filesort), so what differs is one row per statement and every client fighting for the head.
    naive_claim: str
    naive_read: str
    naive_delete: str
    # `SELECT … FOR UPDATE SKIP LOCKED LIMIT 1` + DELETE in one transaction (MySQL 8.0.1+, MariaDB 10.6+).
    skip_locked_take: str
    skip_locked_delete: str

    def insert_many(self, rows: int) -> str:
        return _multi_row(self.insert_many_head, self.insert_many_row, rows)


def seed_delayed(table: str) -> Callable[[int], str]:
    """An n-row INSERT of messages into an mqlite table, due in a day (benchmark seeding)."""
    head = f"INSERT INTO `{check_table(table)}` (queue, body, available_at) VALUES "
    return lambda rows: _multi_row(head, "(%s,%s,NOW(6) + INTERVAL 1 DAY)", rows)


def _multi_row(head: str, row: str, rows: int) -> str:
    return head + ",".join([row] * rows)


@lru_cache(maxsize=32)
def reference_statements(table: str) -> ReferenceStatements:
    """Build (once) the reference statements over `table`."""
    t = f"`{check_table(table)}`"
    head = f"{t} FORCE INDEX (ref_ready)"
    return ReferenceStatements(
        table=table,
        create=f"""
CREATE TABLE {t} (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    queue VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    owner BIGINT UNSIGNED NOT NULL DEFAULT 0,
    claimed_at DATETIME(6) NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    body LONGBLOB NOT NULL,
    PRIMARY KEY (id),
    KEY ref_ready (queue, id),
    KEY ref_owner (owner, claimed_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
""",
        drop=f"DROP TABLE IF EXISTS {t}",
        insert=f"INSERT INTO {t} (queue, body) VALUES (%s, %s)",
        insert_many_head=f"INSERT INTO {t} (queue, body) VALUES ",
        insert_many_row="(%s,%s)",
        naive_claim=(
            f"UPDATE {head} SET owner = CONNECTION_ID(), claimed_at = NOW(6) "
            "WHERE queue = %s AND owner = 0 ORDER BY id LIMIT 1"
        ),
        naive_read=f"SELECT id, body FROM {t} WHERE owner = CONNECTION_ID() AND queue = %s",
        naive_delete=f"DELETE FROM {t} WHERE id = %s",
        skip_locked_take=(
            f"SELECT id, body FROM {head} WHERE queue = %s AND owner = 0 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
        ),
        skip_locked_delete=f"DELETE FROM {t} WHERE id = %s",
    )


@dataclass(frozen=True)
class BareGroupClaim:
    """mqlite's own claim, read-back and group delete (from `mqlite.sql`, so they never drift apart),
    for the "bare group claim" reference: what the SQL costs with no library around it."""

    table: str
    read_committed: str
    connection_id: str
    claim: str  # params: lease µs, queue, priority 0, table name, queue, limit (the bench pushes at priority 0)
    read_back: str  # params: claimed after, queue
    delete_head: str  # params: queue, (priority, available_at, id)…, claimed_at
    claimed_at_column: int  # positions in read_back's rows
    available_at_column: int
    priority_column: int
    owner_column: int

    def delete(self, rows: int) -> str:
        return sql.Statements.in_list(self.delete_head, rows, "(%s,%s,%s)")


@lru_cache(maxsize=8)
def bare_group_claim(table: str) -> BareGroupClaim:
    st = sql.statements(table)
    columns = [c.strip() for c in sql.MESSAGE_COLUMNS.split(",")]
    return BareGroupClaim(
        table=table, read_committed=sql.READ_COMMITTED, connection_id=sql.CONNECTION_ID,
        claim=st.in_list(st.claim_levels, 1),
        read_back=st.read_claimed_since, delete_head=st.delete_claimed,
        claimed_at_column=columns.index("claimed_at"), available_at_column=columns.index("available_at"),
        priority_column=columns.index("priority"),
        owner_column=columns.index("owner"),
    )


@dataclass(frozen=True)
class HueySeedStatements:
    """Seeding the task table of huey's `SqlStorage` (columns queue, data, priority) for the pop peer."""

    insert_head: str
    insert_row: str

    def insert_many(self, rows: int) -> str:
        return _multi_row(self.insert_head, self.insert_row, rows)


@lru_cache(maxsize=8)
def huey_seed_statements(task_table: str) -> HueySeedStatements:
    t = f"`{check_table(task_table)}`"
    return HueySeedStatements(
        insert_head=f"INSERT INTO {t} (queue, data, priority) VALUES ",
        insert_row="(%s,%s,0)",
    )
