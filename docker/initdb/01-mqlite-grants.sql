-- Run once by the mysql image when its datadir is created, after MYSQL_USER exists.
-- PROCESS lets recovery see every session, so the claims of a dead consumer come back at once
-- (without it they come back only when their lease expires or the server restarts).
GRANT PROCESS ON *.* TO 'mqlite'@'%';
