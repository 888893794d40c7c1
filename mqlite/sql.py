"""Every statement mqlite sends, named for what it does.

Statements that name the messages table are built once per table name by `statements()`;
the name is validated before it is ever formatted in. Every value is a bound parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .config import check_table

# Columns a Message is built from, in this order.
MESSAGE_COLUMNS = "id, queue, body, created_at, owner, claimed_at"

SERVER_INFO = "SELECT @@max_allowed_packet, @@auto_increment_increment, VERSION(), CONNECTION_ID()"
# Claim sessions run at READ COMMITTED: their UPDATE then locks only the rows it claims (no gap
# locks), so a push never waits behind a claim. Needs binlog_format=ROW/MIXED where binlogs are on.
READ_COMMITTED = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"
SERVER_CLOCK = "SELECT NOW(6)"
SERVER_UPTIME = "SHOW GLOBAL STATUS LIKE 'Uptime'"
LIVE_CONNECTIONS = "SELECT ID FROM information_schema.PROCESSLIST"
# USER_PRIVILEGES names the grantee as 'user'@'host'; CURRENT_USER() gives user@host.
HAS_PROCESS_PRIVILEGE = (
    "SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES WHERE PRIVILEGE_TYPE = 'PROCESS' AND GRANTEE = "
    "CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')"
)
KILL_CONNECTION = "KILL CONNECTION %s"

# Schema bookkeeping: one row per applied migration file and messages table.
SCHEMA_LOCK = "SELECT GET_LOCK(%s, %s)"
SCHEMA_UNLOCK = "SELECT RELEASE_LOCK(%s)"
CREATE_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS mqlite_schema_version (
    table_name VARCHAR(64) NOT NULL,
    version INT UNSIGNED NOT NULL,
    name VARCHAR(255) NOT NULL,
    applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (table_name, version)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""
APPLIED_VERSIONS = "SELECT version, name, applied_at FROM mqlite_schema_version WHERE table_name = %s ORDER BY version"
RECORD_VERSION = "INSERT INTO mqlite_schema_version (table_name, version, name) VALUES (%s, %s, %s)"
FORGET_VERSIONS = "DELETE FROM mqlite_schema_version WHERE table_name = %s"
VERSION_TABLE_EXISTS = (
    "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s"
)


@dataclass(frozen=True)
class Statements:
    """The statements over one messages table."""

    table: str
    push: str
    push_many_head: str
    push_many_row: str
    claim: str
    read_claimed: str
    read_claimed_since: str
    delete_claimed: str
    present: str
    restore: str
    ack: str
    release: str
    claimed_owners: str
    recover_owners: str
    recover_before: str
    stats: str
    peek: str
    size: str
    purge: str
    drop_table: str

    def push_many(self, rows: int) -> str:
        """A multi-row INSERT of `rows` messages."""
        return self.push_many_head + ",".join([self.push_many_row] * rows)

    def in_list(self, statement: str, count: int) -> str:
        """`statement` with its `{ids}` slot widened to `count` placeholders."""
        return statement.replace("{ids}", ",".join(["%s"] * count))


@lru_cache(maxsize=32)
def statements(table: str) -> Statements:
    """Build (once) the statements over `table`."""
    t = f"`{check_table(table)}`"
    # Statements scoped to one queue name the index: left alone, the optimizer may pick
    # mqlite_owner for `owner = 0` and sort every ready row of the queue (see schema/001).
    by_queue = f"{t} FORCE INDEX (mqlite_ready)"
    return Statements(
        table=table,
        push=f"INSERT INTO {t} (queue, body) VALUES (%s, %s)",
        push_many_head=f"INSERT INTO {t} (queue, body) VALUES ",
        push_many_row="(%s,%s)",
        # The optimistic pop: one atomic UPDATE tags rows with this session's id, walking the
        # queue's ready index from its head.
        claim=(
            f"UPDATE {by_queue} SET owner = CONNECTION_ID(), claimed_at = NOW(6) "
            "WHERE queue = %s AND owner = 0 ORDER BY id LIMIT %s"
        ),
        # Must run on the connection that ran `claim`: CONNECTION_ID() is the claim's tag.
        read_claimed=f"SELECT {MESSAGE_COLUMNS} FROM {t} WHERE queue = %s AND owner = CONNECTION_ID() ORDER BY id",
        read_claimed_since=(
            f"SELECT {MESSAGE_COLUMNS} FROM {t} "
            "WHERE queue = %s AND owner = CONNECTION_ID() AND claimed_at > %s ORDER BY id"
        ),
        # pop's group delete: the rows one claim statement took (same session, same claim time).
        delete_claimed=(
            f"DELETE m FROM {t} AS m FORCE INDEX (mqlite_ready) "
            "WHERE m.queue = %s AND m.id IN ({ids}) AND m.owner = CONNECTION_ID() AND m.claimed_at = %s"
        ),
        present=f"SELECT id FROM {t} WHERE id IN ({{ids}})",
        # Puts a consumed-but-never-returned message back where it was (same id, same age).
        restore=f"INSERT INTO {t} (id, queue, body, created_at) VALUES (%s, %s, %s, %s)",
        # Ack and release are fenced by owner and claim time, so a row that was recovered
        # and claimed again by someone else is never touched by the first holder. They reach the
        # row through mqlite_ready, as the claim does: locking the index entry before the primary
        # key, in the claim's order, instead of the reverse order that deadlocks against it.
        # (Single-table DELETE takes no index hint; the multi-table form does.)
        ack=(
            f"DELETE m FROM {t} AS m FORCE INDEX (mqlite_ready) "
            "WHERE m.queue = %s AND m.id = %s AND m.owner = %s AND m.claimed_at = %s"
        ),
        release=(
            f"UPDATE {by_queue} SET owner = 0, claimed_at = NULL "
            "WHERE queue = %s AND id = %s AND owner = %s AND claimed_at = %s"
        ),
        claimed_owners=f"SELECT DISTINCT owner FROM {t} WHERE owner <> 0 AND claimed_at < %s",
        recover_owners=(
            f"UPDATE {t} SET owner = 0, claimed_at = NULL WHERE owner IN ({{ids}}) AND claimed_at < %s"
        ),
        recover_before=f"UPDATE {t} SET owner = 0, claimed_at = NULL WHERE owner <> 0 AND claimed_at < %s",
        stats=(
            f"SELECT queue, SUM(owner = 0), SUM(owner <> 0), MIN(IF(owner = 0, created_at, NULL)) "
            f"FROM {t} GROUP BY queue ORDER BY queue"
        ),
        peek=f"SELECT {MESSAGE_COLUMNS} FROM {by_queue} WHERE queue = %s AND owner = 0 ORDER BY id LIMIT %s",
        size=f"SELECT COUNT(*) FROM {by_queue} WHERE queue = %s AND owner = 0",
        # Purge in slices so a huge queue never becomes one huge transaction.
        purge=f"DELETE FROM {t} WHERE queue = %s AND owner = 0 LIMIT %s",
        drop_table=f"DROP TABLE IF EXISTS {t}",
    )


# =====================================================================================================
# Reference strategies, benchmark only.
#
# Nothing in the library sends these. `mqlite bench --compare` runs them next to mqlite, with the
# same bodies, so that mqlite's rates can be reported as ratios against the SQL a user would
# otherwise write. They run on a table of their own, of the Dwango shape (mqlite's schema/001):
# fixed here, so that a reference does not move (or start sorting, and locking, a whole queue)
# when mqlite's schema changes. Values are bound parameters; the table name is validated.
# =====================================================================================================


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
