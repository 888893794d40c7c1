-- mqlite schema 001: the messages table.
-- `{table}` is replaced by the (validated) table name when the file is applied.
--
-- A row's life: ready (owner = 0) -> claimed (owner = the claiming session's CONNECTION_ID(),
-- claimed_at = when) -> deleted on success, or back to ready (release, recovery).
--
-- mqlite_ready (queue, id): the claim walks it from the head of one queue, in id order, skipping
--   rows already owned. It must not contain `owner`: an UPDATE that changes a column of the index
--   it scans cannot use that index's order, and falls back to sorting every ready row (filesort).
-- mqlite_owner (owner, claimed_at): a session reads back the rows it just claimed; recovery
--   lists the owners of claimed rows.
CREATE TABLE IF NOT EXISTS {table} (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    queue VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    owner BIGINT UNSIGNED NOT NULL DEFAULT 0,
    claimed_at DATETIME(6) NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    body LONGBLOB NOT NULL,
    PRIMARY KEY (id),
    KEY mqlite_ready (queue, id),
    KEY mqlite_owner (owner, claimed_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
