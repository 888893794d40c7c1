-- mqlite schema 002: leases, failures kept, delayed and unique messages, per-queue counters.
--
-- A row's states, all in this one table:
--   ready    owner = 0, available_at <= NOW(6)
--   delayed  owner = 0, available_at >  NOW(6)        (push with delay/run_at; retry backoff)
--   claimed  owner = session id, claimed_at, lease_until
--   failed   owner = 0, available_at IS NULL, failed_at set, last_error kept
--
-- mqlite_ready becomes (queue, available_at, id): the claim is a range scan over
-- `queue = ? AND available_at <= NOW(6)` in index order, so delayed rows (later) and failed rows
-- (NULL, outside every `<=` range) are never visited. available_at defaults to the insert time,
-- so producers that do not set it, and rows already in the table, stay first-in first-out.
ALTER TABLE {table}
    ADD COLUMN available_at DATETIME(6) NULL DEFAULT CURRENT_TIMESTAMP(6) AFTER created_at,
    ADD COLUMN lease_until DATETIME(6) NULL AFTER claimed_at,
    ADD COLUMN attempts INT UNSIGNED NOT NULL DEFAULT 0,
    ADD COLUMN max_attempts SMALLINT UNSIGNED NULL,
    ADD COLUMN unique_key VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    ADD COLUMN failed_at DATETIME(6) NULL,
    ADD COLUMN last_error TEXT NULL,
    DROP INDEX mqlite_ready,
    ADD INDEX mqlite_ready (queue, available_at, id),
    ADD UNIQUE INDEX mqlite_unique (queue, unique_key);

-- Rows from before this migration become available as of their creation (their FIFO place).
UPDATE {table} SET available_at = created_at WHERE available_at > created_at;

-- Per-queue state shared by every messages table (keyed by its name): processed and failed
-- totals, and whether the queue is paused (a paused queue hands out nothing; pushes still land).
CREATE TABLE IF NOT EXISTS mqlite_queues (
    table_name VARCHAR(64) NOT NULL,
    queue VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    processed BIGINT UNSIGNED NOT NULL DEFAULT 0,
    failed BIGINT UNSIGNED NOT NULL DEFAULT 0,
    counted_since DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    paused_at DATETIME(6) NULL,
    PRIMARY KEY (table_name, queue)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
