-- mqlite schema 007: cancellation, and an opt-in history of finished messages.
--
-- cancelled_at: set by `Queue.cancel` on a claimed message (*cancelling*). The fenced statements a
--   handler's checkpoint/touch/extend runs match only rows without it, so a cancelling claim costs
--   the common path nothing: the rare 0-row answer is then told apart (lost vs cancelling).
-- first_claimed_at: when the message was first claimed, for history. Kept by the statements that end
--   a claim without ending the message (release, retry, failure, recovery); the claim itself writes
--   nothing more (history reads COALESCE(first_claimed_at, claimed_at)).
ALTER TABLE {table}
    ADD COLUMN cancelled_at DATETIME(6) NULL,
    ADD COLUMN first_claimed_at DATETIME(6) NULL;

-- One row per finished message of a queue whose history is on (shared by every messages table,
-- keyed by its name). Written in the same transaction as the statement that ends the message
-- (ack, pop, fail, cancel, purge). The primary key orders a queue's rows by finish time: listing,
-- replay (`finished_at >= since`) and pruning (`finished_at < cutoff`) are range scans of it.
CREATE TABLE IF NOT EXISTS mqlite_history (
    table_name VARCHAR(64) NOT NULL,
    queue VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    finished_at DATETIME(6) NOT NULL,
    id BIGINT UNSIGNED NOT NULL,
    outcome VARCHAR(16) NOT NULL,
    attempts INT UNSIGNED NOT NULL,
    created_at DATETIME(6) NOT NULL,
    first_claimed_at DATETIME(6) NULL,
    duration DOUBLE NULL,
    last_error TEXT NULL,
    worker VARCHAR(255) NULL,
    body LONGBLOB NOT NULL,
    PRIMARY KEY (table_name, queue, finished_at, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The per-queue setting: days of history kept (NULL: history off). mqlite_queues is shared by every
-- messages table and this file runs once per table, so the column is added only when missing
-- (MySQL 8.0 has no ADD COLUMN IF NOT EXISTS; a prepared statement chosen from information_schema).
SET @mqlite_ddl = IF(
    (SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()
     AND TABLE_NAME = 'mqlite_queues' AND COLUMN_NAME = 'history_days') = 0,
    'ALTER TABLE mqlite_queues ADD COLUMN history_days SMALLINT UNSIGNED NULL',
    'DO 0');
PREPARE mqlite_stmt FROM @mqlite_ddl;
EXECUTE mqlite_stmt;
DEALLOCATE PREPARE mqlite_stmt;
