-- mqlite schema 006: message priorities, and recurring schedules.
--
-- priority: a signed 16-bit integer, lower runs first (0 by default); within one priority, first
-- in first out as before. mqlite_ready becomes (queue, priority, available_at, id).
--
-- Why that index, and how the claim walks it. Ordering the claim by (priority, available_at, id)
-- over this index needs no sort, but a claim bounded only by `queue = ?` would read, before the
-- first ready row of each priority, that priority's failed rows (available_at NULL sorts first)
-- and, once a priority has nothing ready, all its delayed and parked rows: an idle poll of a queue
-- with 100k delayed messages would read 100k index entries (bench/RESULTS.md, "Priorities", has
-- the measured cost). So the claim names the priorities in use,
-- `queue = ? AND priority IN (p1, …, pk) AND available_at <= NOW(6)`: k exact ranges, read in
-- index order (no filesort), each stopping at its first delayed row, as the one range of before
-- did. The priorities in use come from a loose index scan of this same index (`SELECT priority …
-- WHERE queue = ? GROUP BY queue, priority`: one index dive per priority), which a consumer
-- repeats at most every 0.2 s and whenever a claim comes back short (claimer.py, levels.py).
-- Beyond 64 priorities in one queue, the claim falls back to the walk bounded by `queue = ?`.
-- Alternatives weighed: a second index (queue, priority, …) beside (queue, available_at, id) costs
-- every push and ack one more index entry, and acks fenced through one index while the claim
-- walks the other lock in orders that deadlock; a dispatcher moving due rows into a "ready"
-- state (Solid Queue, Oban) adds a process and a write per delayed message.
ALTER TABLE {table}
    ADD COLUMN priority SMALLINT NOT NULL DEFAULT 0 AFTER queue,
    DROP INDEX mqlite_ready,
    ADD INDEX mqlite_ready (queue, priority, available_at, id);

-- Recurring schedules, shared by every messages table (keyed by its name, as mqlite_keys).
-- A schedule pushes `body` to `queue` at each tick of `cron` (in `timezone`) or of `every_us`
-- microseconds (multiples of it since the Unix epoch). next_run_at (UTC) is the next tick not yet
-- pushed: a scheduler claims a tick by moving it on with an UPDATE conditional on its old value,
-- in the transaction that pushes the tick's message, so however many schedulers run, one pushes it.
CREATE TABLE IF NOT EXISTS mqlite_schedules (
    table_name VARCHAR(64) NOT NULL,
    name VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    queue VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    body LONGBLOB NOT NULL,
    cron VARCHAR(255) NULL,
    every_us BIGINT UNSIGNED NULL,
    timezone VARCHAR(64) NOT NULL DEFAULT 'UTC',
    priority SMALLINT NOT NULL DEFAULT 0,
    max_attempts SMALLINT UNSIGNED NULL,
    catch_up VARCHAR(8) NOT NULL DEFAULT 'one',
    next_run_at DATETIME(6) NOT NULL,
    last_run_at DATETIME(6) NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (table_name, name),
    KEY mqlite_schedules_due (table_name, next_run_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
