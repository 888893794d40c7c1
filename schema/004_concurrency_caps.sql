-- mqlite schema 004: concurrency caps per key (PerfectQueue's max_running).
--
-- A message pushed with concurrency_key=K, max_running=N waits *parked*: available_at is the far
-- future (9999-12-31, outside every claim's range, so plain claims never look at it) and due_at
-- says when it may run. A promotion, serialised per key by a row lock in mqlite_keys, lets a
-- parked message into the ready range only while fewer than N messages of K are promoted (ready,
-- claimed, or waiting out a backoff). Acknowledging, failing or releasing one frees its slot and
-- promotes the next. Claims are unchanged: messages without a key pay nothing on the claim path.
ALTER TABLE {table}
    ADD COLUMN concurrency_key VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    ADD COLUMN due_at DATETIME(6) NULL,
    ADD INDEX mqlite_key (concurrency_key, available_at);

-- One row per key: its cap (the latest push's max_running) and the lock promotions take.
CREATE TABLE IF NOT EXISTS mqlite_keys (
    table_name VARCHAR(64) NOT NULL,
    concurrency_key VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    max_running SMALLINT UNSIGNED NOT NULL,
    PRIMARY KEY (table_name, concurrency_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
