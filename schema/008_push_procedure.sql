-- mqlite schema 008: a stored procedure that enqueues, for apps written in other languages.
--
--   CALL mqlite_push('emails', '{"to": "ada@example.com"}', 0);   -- then SELECT LAST_INSERT_ID()
--
-- inside the app's own transaction stores what `Queue.push(queue, body, delay=delay_seconds)`
-- would: the same row, refused for the same bad input (SIGNAL SQLSTATE '45000', error 1644,
-- which rolls back only the CALL). Nobody sees the message before the app commits.
-- One procedure per messages table (procedures live beside tables): `mqlite_push` for the default
-- table, `mqlite_push_<table>` for another (sql.push_procedure names it). SQL SECURITY INVOKER: the
-- caller needs EXECUTE on it and INSERT on the table, as for the INSERT it runs; applying this file
-- needs CREATE ROUTINE and ALTER ROUTINE. The routine keeps the sql_mode of the session that created
-- it; it never relies on one (lengths are checked before anything is stored). docs/sql.md has the
-- contract. MySQL 8.0 and MariaDB: DROP + CREATE (MariaDB's CREATE OR REPLACE is not in MySQL).
DROP PROCEDURE IF EXISTS {push_procedure};

DELIMITER //
CREATE PROCEDURE {push_procedure}(
    IN queue_name LONGTEXT CHARACTER SET utf8mb4,
    IN message_body LONGBLOB,
    IN delay_seconds DOUBLE
)
    MODIFIES SQL DATA
    SQL SECURITY INVOKER
    COMMENT 'mqlite: enqueue one message (docs/sql.md)'
BEGIN
    -- The library's rules for a queue name (config.check_queue) and a delay (config.delay_us).
    -- CHAR_LENGTH, not = '': a PAD SPACE collation finds ' ' equal to ''. For the same reason a
    -- name may not end with a space ('a ' would read 'a''s messages); ORD, not = ' ', for that test.
    IF queue_name IS NULL OR CHAR_LENGTH(queue_name) = 0 THEN
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'mqlite_push: queue name is empty';
    END IF;
    IF CHAR_LENGTH(queue_name) > 191 THEN
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'mqlite_push: queue name is longer than 191 characters';
    END IF;
    IF ORD(RIGHT(queue_name, 1)) = 32 THEN
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'mqlite_push: queue name ends with a space';
    END IF;
    IF message_body IS NULL THEN
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'mqlite_push: body is NULL';
    END IF;
    IF delay_seconds < 0 OR delay_seconds > 3153600000 THEN
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'mqlite_push: delay_seconds must be between 0 and 3153600000';
    END IF;
    -- Queue.push's INSERT (sql.Statements.push_with) with no unique key and the default max_attempts.
    INSERT INTO {table} (queue, body, available_at)
    VALUES (queue_name, message_body,
            NOW(6) + INTERVAL CAST(FLOOR(COALESCE(delay_seconds, 0) * 1000000) AS SIGNED) MICROSECOND);
END //
DELIMITER ;
