-- mqlite schema 005: ownership qualified by node, for Galera / Group Replication clusters.
--
-- CONNECTION_ID() is per server: on a multi-primary cluster two sessions on two nodes can have
-- the same id, and one would read back the other's claim. A claim now records the node it was
-- made on, `owner_node` = CRC32 of `@@hostname:@@port` (see sql.NODE for why that identity),
-- and every read-back, delete and fence matches both. Rows claimed before this migration were
-- claimed on the server applying it.
ALTER TABLE {table}
    ADD COLUMN owner_node INT UNSIGNED NOT NULL DEFAULT 0 AFTER owner,
    DROP INDEX mqlite_owner,
    ADD INDEX mqlite_owner (owner, owner_node, claimed_at);

UPDATE {table} SET owner_node = CRC32(CONCAT(@@hostname, ':', @@port)) WHERE owner <> 0;
