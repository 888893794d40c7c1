"""The doorbell's KILL QUERY reaches only sessions that hold a queue's slot now, never one that
merely has the id a listener had (ids restart after a server restart; each host numbers its own)."""

from __future__ import annotations

import threading

import mqlite
from mqlite.testing.database import admin_connection
from mqlite.wake import slot_names

from .conftest import rows
from .helpers import wait_for


def test_a_push_after_lost_connections_does_not_kill_a_session_by_a_listener_id_it_remembers(
    q: mqlite.Queue, dsn: str, admin
) -> None:
    # `other` holds a slot when the pusher reads the holders, then lets it go: from then on it
    # stands for an unrelated session that got a former listener's id (after a server restart).
    other = admin_connection(dsn)
    try:
        cur = other.cursor()
        name = slot_names(q._pool.settings.database, q.table, "jobs")[0]
        cur.execute("SELECT GET_LOCK(%s, 0)", (name,))
        assert cur.fetchone()[0] == 1
        q.push("jobs", b"first")  # reads the holders: `other`
        cur.execute("SELECT RELEASE_LOCK(%s)", (name,))
        cur.fetchall()
        # The server restarts: every connection of the pusher is cut.
        with q._pool.connection() as conn:
            c = conn.cursor()
            c.execute("SELECT CONNECTION_ID()")
            (pusher_id,) = c.fetchone()
            c.close()
        admin.cursor().execute(f"KILL {int(pusher_id)}")
        other_id = other.thread_id()
        slept: list[object] = []
        running = threading.Thread(target=lambda: (cur.execute("SELECT SLEEP(2)"), slept.append(cur.fetchone()[0])))
        running.start()
        wait_for(lambda: rows(admin, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s "
                              "AND INFO LIKE 'SELECT SLEEP%%'", other_id)[0][0], what="the unrelated query running")
        q.push("jobs", b"second")
        running.join(10)
        assert slept == [0], "the push's ring cut the query of a session that holds no slot"
    finally:
        other.close()
