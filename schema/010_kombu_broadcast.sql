-- mqlite schema 010: exchanges and expiring queues of the kombu transport (Celery's broadcast).
--
-- kombu keeps bindings in each process's memory; a fanout exchange (Celery's `celery.pidbox`,
-- remote control) must reach queues other processes bound, so the transport records every
-- binding here. A published message is copied into each bound queue, an ordinary mqlite queue.
-- Both tables are shared by every messages table (keyed by its name) and by kombu `queue_prefix`.
CREATE TABLE IF NOT EXISTS mqlite_kombu_bindings (
    table_name VARCHAR(64) NOT NULL,
    prefix VARCHAR(64) NOT NULL,
    exchange VARCHAR(191) NOT NULL,
    routing_key VARCHAR(191) NOT NULL,
    queue VARCHAR(191) NOT NULL,
    pattern TEXT NULL,
    PRIMARY KEY (table_name, prefix, exchange, routing_key, queue),
    KEY mqlite_kombu_bindings_queue (table_name, prefix, queue)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Queues that go away when unused (kombu's `x-expires`, `auto_delete`): reply queues of
-- `celery inspect`, workers' pidbox queues. Consumers push `expires_at` forward while they poll;
-- a sweep purges the messages and bindings of those past it. A deleted queue stays a few
-- seconds, so that a reply already on its way is purged with it instead of staying behind.
CREATE TABLE IF NOT EXISTS mqlite_kombu_queues (
    table_name VARCHAR(64) NOT NULL,
    prefix VARCHAR(64) NOT NULL,
    queue VARCHAR(191) NOT NULL,
    expires_ms BIGINT UNSIGNED NULL,
    expires_at DATETIME(6) NULL,
    PRIMARY KEY (table_name, prefix, queue),
    KEY mqlite_kombu_queues_expiry (table_name, expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
