"""The doorbell's KILL QUERY reaches only sessions that hold a queue's slot now, never one that
merely has the id a listener had (ids restart after a server restart; each host numbers its own)."""

from __future__ import annotations

import threading

import mqlite
import mqlite.sql
import mqlite.wake
from mqlite.config import Settings, parse_dsn
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


def test_a_pusher_not_allowed_to_kill_the_listener_pushes_and_stops_ringing(dsn: str, caplog) -> None:
    # MySQL/MariaDB refuse KILL of another user's session without CONNECTION_ADMIN/SUPER: the push
    # must still succeed, raise nothing, leak no password, and the listener finds it by its look.
    settings = parse_dsn(dsn)
    admin = admin_connection(dsn)
    cur = admin.cursor()
    cur.execute("CREATE USER IF NOT EXISTS 'mq_review'@'%' IDENTIFIED BY 'pw-review-s3cret'")
    cur.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{settings.database}`.* TO 'mq_review'@'%'")
    limited = Settings("mq_review", "pw-review-s3cret", settings.hosts, settings.database, settings.unix_socket).url()
    try:
        with mqlite.Queue(dsn, wake_bound=0.5) as listener, mqlite.Queue(limited) as pusher:
            listener.apply_schema()
            waited: list[int] = []
            token = listener.doorbell.generation
            t = threading.Thread(target=lambda: waited.append(listener.doorbell.wait(["jobs"], token, 10)))
            t.start()
            wait_for(lambda: "jobs" in listener.doorbell.listening and rows(
                admin, "SELECT IS_USED_LOCK(%s)", slot_names(settings.database, listener.table, "jobs")[0])[0][0],
                what="the listener holding its slot")
            pusher.push("jobs", b"x")
            assert not pusher.doorbell.ringer.ringing
            t.join(10)
            assert not t.is_alive()
            assert listener.pop("jobs").body == b"x"
        assert "pw-review-s3cret" not in caplog.text
    finally:
        cur.execute("DROP USER IF EXISTS 'mq_review'@'%'")
        admin.close()


def test_a_slot_whose_release_was_cut_by_rings_each_time_is_not_kept(dsn: str, admin, monkeypatch) -> None:
    # Pushes ring the slot's holder on every push: under a burst, each try of the listener's RELEASE_LOCK
    # may be cut (the slot statement gives up after 3). The slot must not stay held, forgotten: pushers
    # would ring this session for ever, cutting its waits on every other queue.
    monkeypatch.setattr(mqlite.wake, "LINGER", 0.1)
    with mqlite.Queue(dsn, wake_bound=0.3) as q:
        q.apply_schema()
        real = q.doorbell._one

        def cut_release(statement: str, name: str) -> object:
            if statement == mqlite.sql.WAKE_LEAVE_SLOT:
                return None  # what three interrupted tries return
            return real(statement, name)

        monkeypatch.setattr(q.doorbell, "_one", cut_release)
        slot = slot_names(q._pool.settings.database, q.table, "jobs")[0]
        waiting = threading.Thread(target=q.doorbell.wait, args=(["jobs"], q.doorbell.generation, 1.0))
        waiting.start()
        wait_for(lambda: rows(admin, "SELECT IS_USED_LOCK(%s)", slot)[0][0] is not None, what="the slot taken")
        waiting.join(10)
        wait_for(lambda: rows(admin, "SELECT IS_USED_LOCK(%s)", slot)[0][0] is None, timeout=10,
                 what="the slot let go once nobody waits on the queue")
