-- mqlite schema 001: the messages table.
-- `{table}` is replaced by the (validated) table name when the file is applied.
--
-- A row's life: ready (owner = 0) -> claimed (owner = the claiming session's CONNECTION_ID(),
-- claimed_at = when) -> deleted on success, or back to ready (release, recovery).
-- The pop index (queue, owner, id) makes the claim an index range scan from the head of one
-- queue's ready rows, and the read-back of a session's own rows a point range on (queue, owner).
CREATE TABLE IF NOT EXISTS {table} (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    queue VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    owner BIGINT UNSIGNED NOT NULL DEFAULT 0,
    claimed_at DATETIME(6) NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    body LONGBLOB NOT NULL,
    PRIMARY KEY (id),
    KEY mqlite_pop (queue, owner, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
