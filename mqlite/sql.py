"""Every statement mqlite sends, named for what it does.

Statements that name the messages table are built once per table name by `statements()`;
the name is validated before it is ever formatted in. Every value is a bound parameter.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

from .config import DEFAULT_TABLE, check_table

# Columns a Message is built from, in this order (see Message.from_row).
MESSAGE_COLUMNS = (
    "id, queue, body, created_at, owner, owner_node, claimed_at, available_at, lease_until, "
    "attempts, max_attempts, unique_key, failed_at, last_error, resume_cursor, progress, concurrency_key, priority"
)
# available_at of a message waiting for a concurrency slot: later than any claim ever looks.
PARKED = "'9999-12-31 00:00:00'"
FAR = "'9999-12-31 23:59:59'"  # later than any message, parked ones included: "nothing due"

# The node a session runs on. Not @@server_id: Galera nodes often share one (and MariaDB has no
# @@server_uuid); not @@wsrep_node_name: it defaults to the host name, the same for every node of
# a cluster on one machine. Host name and port tell nodes apart on one machine and across many;
# CRC32 keeps it one small integer in the owner index. Two nodes that report the same identity
# are refused when a DSN lists them both (pool.Pool.check_nodes).
NODE = "CRC32(CONCAT(@@hostname, ':', @@port))"
NODE_IDENTITY = f"SELECT {NODE}, CONCAT(@@hostname, ':', @@port)"
CONNECTION_ID = "SELECT CONNECTION_ID()"
SERVER_INFO = "SELECT @@max_allowed_packet, @@auto_increment_increment, VERSION(), CONNECTION_ID()"
# Claim sessions run at READ COMMITTED: their UPDATE then locks only the rows it claims (no gap
# locks), so a push never waits behind a claim. Needs binlog_format=ROW/MIXED where binlogs are on.
READ_COMMITTED = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"
SERVER_CLOCK = "SELECT NOW(6)"
SESSION_CIPHER = "SHOW SESSION STATUS LIKE 'Ssl_cipher'"  # value '' when the session is not encrypted
SERVER_UPTIME = "SHOW GLOBAL STATUS LIKE 'Uptime'"
SERVER_QUESTIONS = "SHOW GLOBAL STATUS LIKE 'Questions'"  # statements clients sent, server-wide
LIVE_CONNECTIONS = "SELECT ID FROM information_schema.PROCESSLIST"
# USER_PRIVILEGES names the grantee as 'user'@'host'; CURRENT_USER() gives user@host.
HAS_PROCESS_PRIVILEGE = (
    "SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES WHERE PRIVILEGE_TYPE = 'PROCESS' AND GRANTEE = "
    "CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')"
)

# Wake-ups (mqlite/wake.py): a listening session holds a slot lock per queue it waits on; a push
# reads the holders of the slots and cuts their SLEEP short. Locks vanish with their session.
WAKE_TAKE_SLOT = "SELECT GET_LOCK(%s, 0)"
WAKE_LEAVE_SLOT = "SELECT RELEASE_LOCK(%s)"
WAKE_RING = "KILL QUERY %s"


def wake_holders(slots: int) -> str:
    """The sessions holding each of `slots` slot locks (NULL where free), in one row."""
    return "SELECT " + ", ".join(["IS_USED_LOCK(%s)"] * slots)


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
# A push on the caller's connection: a savepoint, so a duplicate unique key takes back only the push.
PUSH_SAVEPOINT = "SAVEPOINT mqlite_push"
UNDO_PUSH = "ROLLBACK TO SAVEPOINT mqlite_push"
# A statement group that ends messages and records them in mqlite_history commits as one.
BEGIN = "START TRANSACTION"
COMMIT = "COMMIT"
NEXT_READ_COMMITTED = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED"  # the next transaction only
ROLLBACK = "ROLLBACK"
VERSION_TABLE_EXISTS = (
    "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s"
)


# History rows copy the message row in the statement before the one that ends it, in one
# transaction; the join keeps out queues whose history is off (a process's cached setting may lag).
HISTORY_RECORD = (
    "INSERT INTO mqlite_history (table_name, queue, finished_at, id, outcome, attempts, created_at, "
    "first_claimed_at, duration, last_error, worker, body) SELECT h.table_name, m.queue, NOW(6), m.id, "
)
# STRAIGHT_JOIN: the messages first (their fence or ids, a few rows), then one primary-key lookup;
# left to itself the optimizer starts from the setting and walks the whole queue (locking it).
HISTORY_JOIN = (
    "STRAIGHT_JOIN mqlite_queues h ON h.table_name = %s AND h.queue = m.queue AND h.history_days IS NOT NULL"
)
LAST_RUN = "TIMESTAMPDIFF(MICROSECOND, m.claimed_at, NOW(6)) / 1e6"
# When a recovered claim is given up (failed, not retried): out of attempts, or cancelling.
GIVE_UP = "cancelled_at IS NOT NULL OR attempts + 1 >= COALESCE(max_attempts, %s)"


@dataclass(frozen=True)
class Statements:
    """The statements over one messages table."""

    table: str
    push: str
    push_with: str
    push_many_head: str
    push_many_row: str
    push_many_head_ranked: str
    push_many_row_ranked: str
    push_ticks_head: str
    push_keyed: str
    set_cap: str
    lock_key: str
    count_running: str
    promote: str
    keys_due: str
    find_unique: str
    find_unique_locked: str
    find_attempts: str
    claim: str
    claim_levels: str
    levels: str
    read_claimed: str
    read_claimed_since: str
    delete_claimed: str
    release_since: str
    owned: str
    present: str
    restore: str
    ack: str
    held_unlocked: str
    ack_many: str
    release: str
    retry_later: str
    fail: str
    extend: str
    checkpoint: str
    in_progress: str
    register_worker: str
    heartbeat_worker: str
    unregister_worker: str
    prune_workers: str
    list_workers: str
    claimed_owners: str
    recover_owners: str
    recover_before: str
    recover_expired: str
    recover_other_nodes: str
    recover_before_expired: str
    stats: str
    counters: str
    add_counts: str
    reset_counts: str
    pause: str
    resume: str
    is_paused: str
    peek: str
    peek_failed: str
    size: str
    purge: str
    purge_failed: str
    retry_failed: str
    retry_failed_ids: str
    drop_table: str
    drop_push_procedure: str
    wake_next: str
    cancel_lock: str
    cancel_delete: str
    cancel_mark: str
    cancelling: str
    finish_cancelled: str
    history_acked: str
    history_popped: str
    history_failed: str
    history_cancelled: str
    history_ids: str
    purge_ids: str
    purge_failed_ids: str
    delete_ids: str

    def push_many(self, rows: int, ranked: bool = False) -> str:
        """A multi-row INSERT of `rows` messages (`ranked`: with a priority each)."""
        if ranked:
            return self.push_many_head_ranked + ",".join([self.push_many_row_ranked] * rows)
        return self.push_many_head + ",".join([self.push_many_row] * rows)

    def recovered_history(self, recover: str) -> str:
        """The history copy of what the recovery UPDATE `recover` gives up: its rows that become
        failed, recorded 'failed' ('cancelled' when cancelling). Parameters: error, worker, table
        name, the UPDATE's own WHERE parameters, max attempts."""
        where = recover.split(" WHERE ", 1)[1]
        return (
            f"{HISTORY_RECORD}IF(m.cancelled_at IS NULL, 'failed', 'cancelled'), m.attempts + 1, m.created_at, "
            f"COALESCE(m.first_claimed_at, m.claimed_at), {LAST_RUN}, %s, %s, m.body "
            f"FROM `{self.table}` AS m {HISTORY_JOIN} "
            f"WHERE {where} AND ({GIVE_UP})"
        )

    def wake_wait(self, queues: int) -> str:
        """The listener's wait over `queues` queue names (params: the bound in seconds, then queue,
        table, queue per name): seconds until the next message is due (<= 0: ready now; a paused
        queue counts as empty), and a SLEEP until then, at most the bound. KILL QUERY cuts it short."""
        firsts = ", ".join([f"COALESCE(({self.wake_next}), {FAR})"] * queues)
        return (
            "SELECT w.due, SLEEP(LEAST(GREATEST(w.due, 0), %s)) FROM "
            f"(SELECT TIMESTAMPDIFF(MICROSECOND, NOW(6), LEAST({FAR}, {firsts})) / 1e6 AS due) AS w"
        )

    @staticmethod
    def in_list(statement: str, count: int, item: str = "%s") -> str:
        """`statement` with its `{ids}` slot widened to `count` placeholders shaped like `item`."""
        return statement.replace("{ids}", ",".join([item] * count))


@lru_cache(maxsize=32)
def statements(table: str) -> Statements:
    """Build (once) the statements over `table`."""
    t = f"`{check_table(table)}`"
    # Statements scoped to one queue name the index: left alone, the optimizer may pick
    # mqlite_owner for `owner = 0` and sort every ready row of the queue (see schema/001).
    by_queue = f"{t} FORCE INDEX (mqlite_ready)"
    # The claim fence: a claimed row is addressed through mqlite_ready (queue, priority, available_at, id),
    # the index the claim walks, so acks and releases lock in the claim's order (index entry,
    # then primary key) instead of the reverse order that deadlocks against it. Owner and claim
    # time make sure a claim that was recovered and taken by someone else is left alone.
    fence = (
        "queue = %s AND priority = %s AND available_at = %s AND id = %s AND owner = %s AND owner_node = %s "
        "AND claimed_at = %s"
    )
    unclaim = "owner = 0, owner_node = 0, claimed_at = NULL, lease_until = NULL"
    # A claim that ends without ending the message keeps its time as the first claim's (for history;
    # before `unclaim` clears it, under MySQL's left-to-right and MariaDB's assignment alike). The
    # claim itself writes nothing more: history reads COALESCE(first_claimed_at, claimed_at).
    let_go = f"first_claimed_at = COALESCE(first_claimed_at, claimed_at), {unclaim}"
    mine = f"owner = CONNECTION_ID() AND owner_node = {NODE}"  # this session's claims, on this node
    live = "cancelled_at IS NULL"
    record, joined = HISTORY_RECORD, HISTORY_JOIN
    from_ready = f"FROM {t} AS m FORCE INDEX (mqlite_ready) {joined}"
    last_run = LAST_RUN
    first_claim = "COALESCE(m.first_claimed_at, m.claimed_at)"
    fence_m = (
        "m.queue = %s AND m.priority = %s AND m.available_at = %s AND m.id = %s AND m.owner = %s "
        "AND m.owner_node = %s AND m.claimed_at = %s"
    )
    # Back in the queue after a delay; a message with a concurrency key gives up its slot and
    # waits parked until a promotion (due_at is read before it is assigned, as with `attempts`).
    back_later = (
        f"available_at = IF(concurrency_key IS NULL, NOW(6) + INTERVAL %s MICROSECOND, {PARKED}), "
        "due_at = IF(concurrency_key IS NULL, NULL, NOW(6) + INTERVAL %s MICROSECOND)"
    )
    # A recovered claim counts as a failed attempt (a message that kills its consumer every
    # time ends up failed, not in an endless loop). `attempts` is read before it is assigned:
    # the same under MySQL's left-to-right and MariaDB's simultaneous assignment.
    # A cancelling claim whose consumer is gone is not retried: it comes back failed.
    give_up = GIVE_UP
    recover_set = (
        f"available_at = IF({give_up}, NULL, available_at), failed_at = IF({give_up}, NOW(6), NULL), "
        f"attempts = attempts + 1, last_error = %s, {let_go}"
    )
    claim = (
        f"UPDATE {by_queue} SET owner = CONNECTION_ID(), owner_node = {NODE}, claimed_at = NOW(6), "
        "lease_until = NOW(6) + INTERVAL %s MICROSECOND "
        "WHERE queue = %s AND available_at <= NOW(6) AND owner = 0 "
        # A paused queue hands out nothing; the check is a constant subquery, read once.
        "AND NOT EXISTS (SELECT 1 FROM mqlite_queues p "
        "WHERE p.table_name = %s AND p.queue = %s AND p.paused_at IS NOT NULL) "
        "ORDER BY priority, available_at, id LIMIT %s"
    )
    return Statements(
        table=table,
        push=f"INSERT INTO {t} (queue, body) VALUES (%s, %s)",
        push_with=(
            f"INSERT INTO {t} (queue, body, available_at, unique_key, max_attempts, priority) "
            "VALUES (%s, %s, NOW(6) + INTERVAL %s MICROSECOND, %s, %s, %s)"
        ),
        push_many_head=f"INSERT INTO {t} (queue, body) VALUES ",
        push_many_row="(%s,%s)",
        push_many_head_ranked=f"INSERT INTO {t} (queue, body, priority) VALUES ",
        push_many_row_ranked="(%s,%s,%s)",
        # The messages of schedule ticks (schedule.py): a tick already pushed is left as it is.
        push_ticks_head=f"INSERT INTO {t} (queue, body, priority, unique_key, max_attempts) VALUES ",
        push_keyed=(
            f"INSERT INTO {t} (queue, body, available_at, due_at, unique_key, max_attempts, concurrency_key, "
            f"priority) VALUES (%s, %s, {PARKED}, NOW(6) + INTERVAL %s MICROSECOND, %s, %s, %s, %s)"
        ),
        set_cap=(
            "INSERT INTO mqlite_keys (table_name, concurrency_key, max_running) VALUES (%s, %s, %s) "
            "ON DUPLICATE KEY UPDATE max_running = %s"
        ),
        # A promotion, in one transaction: lock the key, count its promoted messages, let the
        # oldest due parked ones fill the free slots.
        lock_key="SELECT max_running FROM mqlite_keys WHERE table_name = %s AND concurrency_key = %s FOR UPDATE",
        count_running=(
            f"SELECT COUNT(*) FROM {t} FORCE INDEX (mqlite_key) WHERE concurrency_key = %s AND available_at < {PARKED}"
        ),
        promote=(
            f"UPDATE {t} FORCE INDEX (mqlite_key) SET available_at = due_at, due_at = NULL "
            f"WHERE concurrency_key = %s AND available_at = {PARKED} AND due_at <= NOW(6) ORDER BY due_at, id LIMIT %s"
        ),
        keys_due=(
            f"SELECT DISTINCT concurrency_key FROM {t} FORCE INDEX (mqlite_key) "
            f"WHERE concurrency_key IS NOT NULL AND available_at = {PARKED} AND due_at <= NOW(6)"
        ),
        find_unique=f"SELECT id FROM {t} WHERE queue = %s AND unique_key = %s",
        # Inside a caller's transaction: a locking read sees the latest committed row (a plain one
        # reads the transaction's snapshot, which may predate it). The failed INSERT already holds
        # a shared lock on that index entry, so this never waits. LOCK IN SHARE MODE: MariaDB and MySQL 8.
        find_unique_locked=f"SELECT id FROM {t} WHERE queue = %s AND unique_key = %s LOCK IN SHARE MODE",
        find_attempts=f"SELECT attempts, max_attempts, concurrency_key FROM {t} WHERE id = %s",
        # The optimistic pop: one atomic UPDATE tags rows with this session's id, walking the
        # queue's ready ranges from their heads, most urgent priority first (schema/006).
        claim_levels=claim.replace("WHERE queue = %s AND", "WHERE queue = %s AND priority IN ({ids}) AND"),
        # The same over more priorities than claim_levels names: bounded by the queue alone, so it
        # also reads the failed, delayed and parked rows it passes.
        claim=claim,
        # The priorities of a queue: a loose index scan (one dive per priority, not one per row).
        levels=(
            f"SELECT priority FROM {by_queue} WHERE queue = %s GROUP BY queue, priority "
            "ORDER BY priority LIMIT %s"
        ),
        # Must run on the connection that ran `claim`: CONNECTION_ID() is the claim's tag.
        read_claimed=(
            f"SELECT {MESSAGE_COLUMNS} FROM {t} WHERE {mine} AND queue = %s "
            "ORDER BY priority, available_at, id"
        ),
        read_claimed_since=(
            f"SELECT {MESSAGE_COLUMNS} FROM {t} "
            f"WHERE {mine} AND claimed_at > %s AND queue = %s ORDER BY priority, available_at, id"
        ),
        # pop's group delete: the rows one claim statement took (same session, same claim time).
        # Single-table DELETE takes no index hint; the multi-table form does.
        delete_claimed=(
            f"DELETE m FROM {t} AS m FORCE INDEX (mqlite_ready) WHERE m.queue = %s "
            f"AND (m.priority, m.available_at, m.id) IN ({{ids}}) AND m.owner = CONNECTION_ID() "
            f"AND m.owner_node = {NODE} AND m.claimed_at = %s"
        ),
        # Undo a fetch that failed half-way, on its own (still live) session.
        release_since=f"UPDATE {t} SET {unclaim} WHERE {mine} AND claimed_at > %s",
        # What a claim session still owns, before it is closed as idle.
        owned=f"SELECT id FROM {t} FORCE INDEX (mqlite_owner) WHERE {mine}",
        present=f"SELECT id FROM {t} WHERE id IN ({{ids}})",
        # Puts a consumed-but-never-returned message back where it was (same id, same place).
        restore=(
            f"INSERT INTO {t} (id, queue, body, created_at, available_at, attempts, max_attempts, unique_key, "
            "concurrency_key, priority) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        ),
        ack=(
            f"DELETE m FROM {t} AS m FORCE INDEX (mqlite_ready) WHERE m.queue = %s AND m.priority = %s "
            "AND m.available_at = %s AND m.id = %s AND m.owner = %s AND m.owner_node = %s AND m.claimed_at = %s"
        ),
        # Whether a claim is still held and free, without waiting for a transaction that locks it
        # (SKIP LOCKED: MySQL 8.0, MariaDB 10.6).
        held_unlocked=(
            f"SELECT m.id FROM {t} AS m FORCE INDEX (mqlite_ready) WHERE m.queue = %s AND m.priority = %s "
            "AND m.available_at = %s AND m.id = %s AND m.owner = %s AND m.owner_node = %s AND m.claimed_at = %s "
            "FOR UPDATE SKIP LOCKED"
        ),
        ack_many=(
            f"DELETE m FROM {t} AS m FORCE INDEX (mqlite_ready) WHERE "
            "(m.queue, m.priority, m.available_at, m.id, m.owner, m.owner_node, m.claimed_at) IN ({ids})"
        ),
        # A cancelling claim (cancelled_at set) matches none of these: the 0-row answer, rare, is then
        # told apart from a lost claim by `cancelling`, and the message ends cancelled.
        release=f"UPDATE {by_queue} SET {let_go}, {back_later} WHERE {fence} AND {live}",
        retry_later=(
            f"UPDATE {by_queue} SET {let_go}, attempts = %s, last_error = %s, {back_later} WHERE {fence} AND {live}"
        ),
        fail=(
            f"UPDATE {by_queue} SET {let_go}, attempts = %s, last_error = %s, "
            f"available_at = NULL, failed_at = NOW(6) WHERE {fence} AND {live}"
        ),
        extend=f"UPDATE {by_queue} SET lease_until = NOW(6) + INTERVAL %s MICROSECOND WHERE {fence} AND {live}",
        checkpoint=(
            f"UPDATE {by_queue} SET resume_cursor = %s, progress = %s, "
            f"lease_until = NOW(6) + INTERVAL %s MICROSECOND WHERE {fence} AND {live}"
        ),
        in_progress=(
            f"SELECT {MESSAGE_COLUMNS} FROM {t} FORCE INDEX (mqlite_owner) WHERE owner > 0 "
            "AND (queue = %s OR %s IS NULL) ORDER BY claimed_at LIMIT %s"
        ),
        register_worker=(
            "INSERT INTO mqlite_workers (table_name, host, pid, queues) VALUES (%s, %s, %s, %s)"
        ),
        heartbeat_worker=(
            "UPDATE mqlite_workers SET heartbeat_at = NOW(6), current_messages = %s, processed = %s, failed = %s "
            "WHERE id = %s"
        ),
        unregister_worker="DELETE FROM mqlite_workers WHERE id = %s",
        prune_workers=(
            "DELETE FROM mqlite_workers WHERE table_name = %s AND heartbeat_at < NOW(6) - INTERVAL %s MICROSECOND"
        ),
        list_workers=(
            "SELECT id, host, pid, queues, started_at, heartbeat_at, current_messages, processed, failed, "
            "TIMESTAMPDIFF(MICROSECOND, heartbeat_at, NOW(6)) / 1e6 "
            "FROM mqlite_workers WHERE table_name = %s ORDER BY started_at"
        ),
        # PROCESSLIST and uptime describe the node we are connected to: those rules touch only
        # claims made on it. Claims of other nodes come back when their lease runs out.
        claimed_owners=(
            f"SELECT DISTINCT owner FROM {t} WHERE owner <> 0 AND owner_node = {NODE} AND claimed_at < %s"
        ),
        recover_owners=(
            f"UPDATE {t} SET {recover_set} WHERE owner IN ({{ids}}) AND owner_node = {NODE} AND claimed_at < %s"
        ),
        recover_before=(
            f"UPDATE {t} SET {recover_set} WHERE owner <> 0 AND owner_node = {NODE} AND claimed_at < %s"
        ),
        recover_expired=f"UPDATE {t} SET {recover_set} WHERE owner <> 0 AND lease_until < NOW(6)",
        recover_other_nodes=(
            f"UPDATE {t} SET {recover_set} WHERE owner <> 0 AND owner_node <> {NODE} AND lease_until < NOW(6)"
        ),
        recover_before_expired=(
            f"UPDATE {t} SET {recover_set} WHERE owner <> 0 AND owner_node = {NODE} AND claimed_at < %s "
            "AND lease_until < NOW(6)"
        ),
        stats=(
            "SELECT queue, "
            "SUM(owner = 0 AND available_at <= NOW(6)), SUM(owner = 0 AND available_at > NOW(6)), "
            "SUM(owner <> 0), SUM(available_at IS NULL), "
            "MIN(IF(owner = 0 AND available_at <= NOW(6), available_at, NULL)), "
            "TIMESTAMPDIFF(MICROSECOND, MIN(IF(owner = 0 AND available_at <= NOW(6), available_at, NULL)), NOW(6))"
            " / 1e6, SUM(owner <> 0 AND cancelled_at IS NOT NULL) "
            f"FROM {t} GROUP BY queue ORDER BY queue"
        ),
        counters=(
            "SELECT queue, processed, failed, counted_since, paused_at IS NOT NULL "
            "FROM mqlite_queues WHERE table_name = %s"
        ),
        add_counts=(
            "INSERT INTO mqlite_queues (table_name, queue, processed, failed) VALUES (%s, %s, %s, %s) "
            "ON DUPLICATE KEY UPDATE processed = processed + %s, failed = failed + %s"
        ),
        reset_counts=(
            "UPDATE mqlite_queues SET processed = 0, failed = 0, counted_since = NOW(6) "
            "WHERE table_name = %s AND (queue = %s OR %s IS NULL)"
        ),
        pause=(
            "INSERT INTO mqlite_queues (table_name, queue, paused_at) VALUES (%s, %s, NOW(6)) "
            "ON DUPLICATE KEY UPDATE paused_at = COALESCE(paused_at, NOW(6))"
        ),
        resume="UPDATE mqlite_queues SET paused_at = NULL WHERE table_name = %s AND queue = %s",
        is_paused=(
            "SELECT 1 FROM mqlite_queues WHERE table_name = %s AND queue = %s AND paused_at IS NOT NULL"
        ),
        peek=(
            f"SELECT {MESSAGE_COLUMNS} FROM {by_queue} WHERE queue = %s AND available_at IS NOT NULL "
            "ORDER BY priority, available_at, id LIMIT %s"
        ),
        peek_failed=(
            f"SELECT {MESSAGE_COLUMNS} FROM {by_queue} WHERE queue = %s AND available_at IS NULL "
            "ORDER BY id LIMIT %s"
        ),
        size=f"SELECT COUNT(*) FROM {by_queue} WHERE queue = %s AND available_at <= NOW(6) AND owner = 0",
        # Purges run in slices so a huge queue never becomes one huge transaction.
        purge=f"DELETE FROM {t} WHERE queue = %s AND owner = 0 AND available_at IS NOT NULL LIMIT %s",
        purge_failed=(
            f"DELETE FROM {t} WHERE queue = %s AND available_at IS NULL "
            "AND failed_at < NOW(6) - INTERVAL %s MICROSECOND LIMIT %s"
        ),
        retry_failed=(
            f"UPDATE {by_queue} SET available_at = NOW(6), failed_at = NULL, attempts = 0 "
            "WHERE queue = %s AND available_at IS NULL"
        ),
        retry_failed_ids=(
            f"UPDATE {by_queue} SET available_at = NOW(6), failed_at = NULL, attempts = 0 "
            "WHERE queue = %s AND available_at IS NULL AND id IN ({ids})"
        ),
        # Cancelling: the row locked by its id, then removed (not claimed) or marked (claimed).
        cancel_lock=(
            f"SELECT owner, available_at IS NULL, available_at > NOW(6), concurrency_key FROM {t} "
            "WHERE id = %s AND queue = %s FOR UPDATE"
        ),
        cancel_delete=f"DELETE FROM {t} WHERE id = %s AND owner = 0",
        cancel_mark=f"UPDATE {t} SET cancelled_at = COALESCE(cancelled_at, NOW(6)) WHERE id = %s AND owner <> 0",
        cancelling=(
            f"SELECT cancelled_at IS NOT NULL FROM {t} WHERE id = %s AND owner = %s AND owner_node = %s "
            "AND claimed_at = %s"
        ),
        finish_cancelled=(
            f"DELETE m FROM {t} AS m FORCE INDEX (mqlite_ready) WHERE {fence_m} AND m.cancelled_at IS NOT NULL"
        ),
        # attempts in history count the attempt that ended the message (the table counts failed ones).
        history_acked=(
            f"{record}IF(m.cancelled_at IS NULL, 'acked', 'cancelled_late'), m.attempts + 1, m.created_at, "
            f"{first_claim}, {last_run}, m.last_error, %s, m.body {from_ready} "
            "WHERE (m.queue, m.priority, m.available_at, m.id, m.owner, m.owner_node, m.claimed_at) IN ({ids})"
        ),
        history_popped=(
            f"{record}'popped', m.attempts + 1, m.created_at, {first_claim}, {last_run}, m.last_error, "
            f"%s, m.body {from_ready} WHERE m.queue = %s AND (m.priority, m.available_at, m.id) IN ({{ids}}) "
            f"AND m.owner = CONNECTION_ID() AND m.owner_node = {NODE} AND m.claimed_at = %s"
        ),
        history_failed=(
            f"{record}'failed', %s, m.created_at, {first_claim}, {last_run}, %s, %s, m.body {from_ready} "
            f"WHERE {fence_m} AND m.cancelled_at IS NULL"
        ),
        history_cancelled=(
            f"{record}'cancelled', m.attempts + 1, m.created_at, {first_claim}, {last_run}, m.last_error, "
            f"%s, m.body {from_ready} WHERE {fence_m} AND m.cancelled_at IS NOT NULL"
        ),
        history_ids=(
            f"{record}%s, m.attempts, m.created_at, {first_claim}, NULL, m.last_error, %s, m.body "
            f"FROM {t} AS m {joined} WHERE m.id IN ({{ids}}) AND m.owner = 0"
        ),
        purge_ids=f"SELECT id FROM {t} WHERE queue = %s AND owner = 0 AND available_at IS NOT NULL LIMIT %s FOR UPDATE",
        purge_failed_ids=(
            f"SELECT id FROM {t} WHERE queue = %s AND available_at IS NULL "
            "AND failed_at < NOW(6) - INTERVAL %s MICROSECOND LIMIT %s FOR UPDATE"
        ),
        delete_ids=f"DELETE FROM {t} WHERE id IN ({{ids}}) AND owner = 0",
        drop_table=f"DROP TABLE IF EXISTS {t}",
        drop_push_procedure=f"DROP PROCEDURE IF EXISTS `{push_procedure(table)}`",
        # The head of one queue's unclaimed rows (ready or not yet due), as the claim would see it.
        # The earliest unclaimed row of one queue (ready or not yet due), as the claim would see it:
        # for each priority in use (a loose index scan, as `priorities`), the head of its range in
        # index order (no sort), then the earliest of those heads.
        wake_next=(
            "SELECT MIN(h.at) FROM (SELECT (SELECT m.available_at FROM "
            f"{t} AS m FORCE INDEX (mqlite_ready) WHERE m.queue = d.queue AND m.priority = d.priority "
            "AND m.available_at IS NOT NULL AND m.owner = 0 ORDER BY m.available_at, m.id LIMIT 1) AS at "
            f"FROM (SELECT queue, priority FROM {by_queue} WHERE queue = %s GROUP BY queue, priority) AS d "
            "WHERE NOT EXISTS (SELECT 1 FROM mqlite_queues p "
            "WHERE p.table_name = %s AND p.queue = %s AND p.paused_at IS NOT NULL)) AS h"
        ),
    )


def push_procedure(table: str) -> str:
    """The name of the stored procedure that enqueues into `table` (schema/008): procedures live
    beside tables in a database, one per messages table. `mqlite_push` for the default table,
    `mqlite_push_<table>` for another (a long name is cut and given a checksum: 64 characters at most)."""
    check_table(table)
    if table == DEFAULT_TABLE:
        return "mqlite_push"
    name = f"mqlite_push_{table}"
    if len(name) > 64:
        name = f"{name[:55]}_{zlib.crc32(table.encode()):08x}"
    return name


# History settings and rows (mqlite_queues.history_days, mqlite_history; schema/007).
KEEP_HISTORY = (
    "INSERT INTO mqlite_queues (table_name, queue, history_days) VALUES (%s, %s, %s) "
    "ON DUPLICATE KEY UPDATE history_days = %s"
)
HISTORY_SETTINGS = "SELECT queue, history_days FROM mqlite_queues WHERE table_name = %s AND history_days IS NOT NULL"
HISTORY_COLUMNS = (
    "queue, id, outcome, attempts, created_at, first_claimed_at, finished_at, duration, last_error, worker, body"
)
# `since`: an absolute server time, else a duration back from now; outcomes widen `{ids}`.
_HISTORY_RANGE = (
    f"SELECT {HISTORY_COLUMNS} FROM mqlite_history WHERE table_name = %s AND queue = %s "
    "AND finished_at >= COALESCE(%s, NOW(6) - INTERVAL %s MICROSECOND) AND outcome IN ({ids}) "
)
HISTORY_NEWEST = _HISTORY_RANGE + "ORDER BY finished_at DESC, id DESC LIMIT %s"
HISTORY_OLDEST = _HISTORY_RANGE + "ORDER BY finished_at, id LIMIT %s"
# Retention, a slice at a time: a range of the primary key (table_name, queue, finished_at, id).
PRUNE_HISTORY = (
    "DELETE FROM mqlite_history WHERE table_name = %s AND queue = %s "
    "AND finished_at < NOW(6) - INTERVAL %s DAY ORDER BY finished_at LIMIT %s"
)
# A pop or grouped ack whose DELETE found fewer rows than its history copy (a claim recovered in
# between): the copies of the rows not deleted go, right after.
UNRECORD_POPPED = (
    "DELETE FROM mqlite_history WHERE table_name = %s AND queue = %s AND outcome = 'popped' "
    "AND finished_at >= %s AND id IN ({ids})"
)
UNRECORD_ACKED = (
    "DELETE FROM mqlite_history WHERE table_name = %s AND queue = %s AND outcome IN ('acked', 'cancelled_late') "
    "AND finished_at >= %s AND id IN ({ids})"
)
# A grouped ack whose copy saw a row that another ending of the same claim (a heartbeat ending it
# cancelled, a second ack) deleted before its DELETE could: that message's rows, to keep only one.
HISTORY_ROWS_OF = (
    "SELECT id, finished_at, outcome FROM mqlite_history WHERE table_name = %s AND queue = %s "
    "AND finished_at >= %s AND id IN ({ids}) ORDER BY id, finished_at"
)
UNRECORD_ONE = "DELETE FROM mqlite_history WHERE table_name = %s AND queue = %s AND finished_at = %s AND id = %s"
FORGET_HISTORY = "DELETE FROM mqlite_history WHERE table_name = %s"


# The kombu transport's exchanges and expiring queues (schema/010; mqlite/contrib/kombu/routing.py).
# Shared tables keyed by messages table and kombu queue_prefix; `{ids}` is filled by Statements.in_list.
KOMBU_BIND = (
    "INSERT INTO mqlite_kombu_bindings (table_name, prefix, exchange, routing_key, queue, pattern) "
    "VALUES (%s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE pattern = pattern"
)
KOMBU_BINDINGS = (
    "SELECT routing_key, pattern, queue FROM mqlite_kombu_bindings "
    "WHERE table_name = %s AND prefix = %s AND exchange = %s"
)
KOMBU_UNBIND = (
    "DELETE FROM mqlite_kombu_bindings "
    "WHERE table_name = %s AND prefix = %s AND exchange = %s AND routing_key = %s AND queue = %s"
)
KOMBU_UNBIND_QUEUE = "DELETE FROM mqlite_kombu_bindings WHERE table_name = %s AND prefix = %s AND queue = %s"
# expires_ms NULL: a queue that never expires (a redeclared durable queue cancels a pending deletion).
KOMBU_DECLARE_QUEUE = (
    "INSERT INTO mqlite_kombu_queues (table_name, prefix, queue, expires_ms, expires_at) "
    "VALUES (%s, %s, %s, %s, NOW(6) + INTERVAL %s MICROSECOND) "
    "ON DUPLICATE KEY UPDATE expires_ms = %s, expires_at = NOW(6) + INTERVAL %s MICROSECOND"
)
KOMBU_TOUCH_QUEUES = (
    "UPDATE mqlite_kombu_queues SET expires_at = NOW(6) + INTERVAL (expires_ms * 1000) MICROSECOND "
    "WHERE table_name = %s AND prefix = %s AND expires_ms IS NOT NULL AND queue IN ({ids})"
)
KOMBU_EXPIRED_QUEUES = (
    "SELECT prefix, queue FROM mqlite_kombu_queues WHERE table_name = %s AND expires_at < NOW(6) "
    "ORDER BY expires_at LIMIT %s"
)
# Only while still expired: a consumer that redeclared the queue meanwhile keeps it.
KOMBU_FORGET_QUEUE = (
    "DELETE FROM mqlite_kombu_queues WHERE table_name = %s AND prefix = %s AND queue = %s AND expires_at < NOW(6)"
)


# Recurring schedules (schedule.py; schema/006), shared by every messages table (keyed by its name).
SCHEDULE_COLUMNS = (
    "name, queue, body, cron, every_us, timezone, priority, max_attempts, catch_up, next_run_at, last_run_at"
)
SERVER_UTC = "SELECT UTC_TIMESTAMP(6)"
# A schedule added again keeps its next tick unless its timing changed. next_run_at is assigned
# first, so it compares the old timing under MySQL's left-to-right assignment and MariaDB's alike.
SCHEDULE_UPSERT = (
    "INSERT INTO mqlite_schedules (table_name, name, queue, body, cron, every_us, timezone, priority, "
    "max_attempts, catch_up, next_run_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON DUPLICATE KEY UPDATE next_run_at = IF(cron <=> %s AND every_us <=> %s AND timezone = %s, next_run_at, %s), "
    "queue = %s, body = %s, cron = %s, every_us = %s, timezone = %s, priority = %s, max_attempts = %s, catch_up = %s"
)
SCHEDULE_DELETE = "DELETE FROM mqlite_schedules WHERE table_name = %s AND name = %s"
FORGET_SCHEDULES = "DELETE FROM mqlite_schedules WHERE table_name = %s"
SCHEDULE_LIST = f"SELECT {SCHEDULE_COLUMNS} FROM mqlite_schedules WHERE table_name = %s ORDER BY name"
# A scheduler's poll: one statement, whatever the number due (at most a batch).
SCHEDULES_DUE = (
    f"SELECT {SCHEDULE_COLUMNS}, UTC_TIMESTAMP(6) FROM mqlite_schedules FORCE INDEX (mqlite_schedules_due) "
    "WHERE table_name = %s AND next_run_at <= UTC_TIMESTAMP(6) ORDER BY next_run_at, name LIMIT %s"
)
# Claims the ticks read by the poll: moves each schedule on, only where next_run_at is still what
# was read (a scheduler that lost the race matches fewer rows and rolls back).
SCHEDULES_ADVANCE = (
    "UPDATE mqlite_schedules SET next_run_at = CASE name {cases} END, last_run_at = UTC_TIMESTAMP(6) "
    "WHERE table_name = %s AND (name, next_run_at) IN ({ids})"
)
START_TRANSACTION = "START TRANSACTION"


def advance_schedules(count: int) -> str:
    """SCHEDULES_ADVANCE for `count` schedules (params: name, next time per schedule, the table
    name, then name, old next time per schedule)."""
    return SCHEDULES_ADVANCE.replace("{cases}", " ".join(["WHEN %s THEN %s"] * count)).replace(
        "{ids}", ",".join(["(%s,%s)"] * count))


def push_ticks(st: Statements, count: int) -> str:
    """The INSERT of `count` tick messages (params: queue, body, priority, unique key, max attempts each)."""
    return st.push_ticks_head + ",".join(["(%s,%s,%s,%s,%s)"] * count) + " ON DUPLICATE KEY UPDATE id = id"
