-- mqlite schema 003: resumable long messages and the live worker registry.
--
-- resume_cursor / progress: what a handler saved with `message.checkpoint(cursor, progress)`.
-- They survive release, failure and recovery, so the next consumer resumes where the last one
-- stopped; the row's deletion (acknowledgement) ends them.
ALTER TABLE {table}
    ADD COLUMN resume_cursor TEXT NULL,
    ADD COLUMN progress DOUBLE NULL;

-- One row per running Worker / `mqlite consume` process, shared by every messages table (keyed by
-- its name). Heartbeats every few seconds (never per message); a row whose heartbeat stopped is
-- pruned by the others, and its claims come back by the usual recovery rules.
CREATE TABLE IF NOT EXISTS mqlite_workers (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    table_name VARCHAR(64) NOT NULL,
    host VARCHAR(255) NOT NULL,
    pid INT UNSIGNED NOT NULL,
    queues TEXT NOT NULL,
    started_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    heartbeat_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    current_messages VARCHAR(1024) NULL,
    processed BIGINT UNSIGNED NOT NULL DEFAULT 0,
    failed BIGINT UNSIGNED NOT NULL DEFAULT 0,
    PRIMARY KEY (id),
    KEY mqlite_workers_beat (table_name, heartbeat_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
