"""Claims of dead owners come back; live claims never do."""

from __future__ import annotations

import signal
import threading

import pytest

import mqlite
from mqlite.config import Settings, parse_dsn

from .conftest import admin_connection, rows
from .helpers import python, read_line, wait_for

HOLD_A_CLAIM = """
import sys, mqlite
q = mqlite.Queue(sys.argv[1])
with q.claim(sys.argv[2]) as m:
    print(m.id, flush=True)
    sys.stdin.read()  # hold the claim until killed
"""


def test_killed_consumer_claim_comes_back_after_recover(q: mqlite.Queue, dsn: str) -> None:
    pushed = q.push("jobs", b"survive me")
    consumer = python(HOLD_A_CLAIM, dsn, "jobs")
    assert int(read_line(consumer)) == pushed
    assert q.size("jobs") == 0  # claimed by the consumer
    consumer.send_signal(signal.SIGKILL)
    consumer.wait(timeout=10)
    # The server notices the dead session within moments; until then the claim must stay put.
    report = wait_for(lambda: q.recover().dead_owner == 1 or None, what="recovery of the dead claim")
    assert report
    with q.claim("jobs") as again:
        assert again.id == pushed and again.body == b"survive me"
    assert q.size("jobs") == 0


def test_live_claim_of_another_process_is_not_recovered(q: mqlite.Queue, dsn: str) -> None:
    q.push("jobs", b"mine")
    consumer = python(HOLD_A_CLAIM, dsn, "jobs")
    try:
        read_line(consumer)
        for _ in range(3):
            report = q.recover()
            assert report.total == 0 and report.sees_all_connections
        assert q.size("jobs") == 0
    finally:
        consumer.kill()
        consumer.wait(timeout=10)


def test_live_claim_in_this_process_is_not_recovered(q: mqlite.Queue, dsn: str) -> None:
    other = mqlite.Queue(dsn)
    q.push("jobs", b"held")
    with other.claim("jobs") as m:
        assert q.recover().total == 0
        assert q.pop("jobs") is None
    assert m.body == b"held" and q.size("jobs") == 0
    other.close()


def test_claim_made_before_server_start_is_recovered_even_if_the_id_is_alive(q: mqlite.Queue, admin) -> None:
    # After a restart, session ids start again from 1: an old owner id may name a live session.
    q.push("jobs", b"stale")
    (live,) = rows(admin, "SELECT CONNECTION_ID()")[0]
    admin.cursor().execute(
        "UPDATE mqlite_messages SET owner = %s, owner_node = CRC32(CONCAT(@@hostname, ':', @@port)), "
        "claimed_at = '2000-01-01 00:00:00', lease_until = NOW(6) + INTERVAL 1 HOUR WHERE queue = 'jobs'", (live,)
    )
    report = q.recover()
    assert report.before_restart == 1 and report.dead_owner == 0
    assert q.pop("jobs").body == b"stale"


def test_killed_claim_session_rows_come_back(q: mqlite.Queue, admin) -> None:
    q.push("jobs", b"orphan")
    with q.claim("jobs") as m:
        admin.cursor().execute("KILL CONNECTION %s", (m.owner,))
        wait_for(lambda: q.recover().dead_owner == 1, what="recovery after KILL")
        assert q.size("jobs") == 1  # back in the queue while the handler still runs
    # The handler's ack found its claim gone: the message is still there, delivered again.
    again = q.pop("jobs")
    assert again.id == m.id


def test_without_process_privilege_no_live_claim_is_stolen(dsn: str) -> None:
    settings = parse_dsn(dsn)
    admin = admin_connection(dsn)
    cur = admin.cursor()
    cur.execute("CREATE USER IF NOT EXISTS 'mq_limited'@'%' IDENTIFIED BY 'pw'")
    cur.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, INDEX, ALTER ON `{settings.database}`.* TO 'mq_limited'@'%'")
    limited = Settings("mq_limited", "pw", settings.hosts, settings.database, settings.unix_socket).url()
    try:
        root_q = mqlite.Queue(dsn)
        root_q.apply_schema()
        root_q.push("jobs", b"held by root")
        q = mqlite.Queue(limited)
        with root_q.claim("jobs") as m:  # a live claim by a session the limited user cannot see
            report = q.recover()
            assert not report.sees_all_connections and report.total == 0
            assert not q.stats().sees_all_connections
            assert q.pop("jobs") is None
        assert m.body == b"held by root"
        q.close()
        root_q.close()
    finally:
        cur.execute("DROP USER IF EXISTS 'mq_limited'@'%'")
        admin.close()


def test_push_survives_a_killed_pooled_connection(q: mqlite.Queue, admin) -> None:
    q.push("jobs", b"one")
    sessions = [r[0] for r in rows(admin, "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = DATABASE()")]
    (me,) = rows(admin, "SELECT CONNECTION_ID()")[0]
    for s in sessions:
        if s != me:
            admin.cursor().execute("KILL CONNECTION %s", (s,))
    # Every pooled connection is dead now; the push reconnects and stores the message once.
    q.push("jobs", b"two")
    assert sorted(b for (b,) in rows(admin, "SELECT body FROM mqlite_messages")) == [b"one", b"two"]


def test_many_threads_claim_with_a_tiny_pool(dsn: str) -> None:
    q = mqlite.Queue(dsn, pool_size=2)
    q.apply_schema()
    q.push_many("t", [str(i) for i in range(500)])
    seen: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        while True:
            with q.claim("t") as m:
                if m is None:
                    return
                with lock:
                    seen.append(m.id)

    threads = [threading.Thread(target=work) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(seen) == len(set(seen)) == 500
    stats = q.stats().queues["t"]
    assert (stats.ready, stats.claimed, stats.processed) == (0, 0, 500)
    q.close()


def test_claims_of_another_node_come_back_only_when_their_lease_expires(q: mqlite.Queue, admin) -> None:
    """On a cluster, PROCESSLIST and uptime are this node's: another node's claim, even by a session id
    that is dead here or one from before our restart, is judged by its lease alone."""
    q.push_many("jobs", [b"live lease", b"expired lease"])
    admin.cursor().execute(
        "UPDATE mqlite_messages SET owner = 4000000000, owner_node = CRC32(CONCAT(@@hostname, ':', @@port)) + 1, "
        "claimed_at = '2000-01-01 00:00:00', lease_until = IF(body = 'live lease', NOW(6) + INTERVAL 1 HOUR, "
        "NOW(6) - INTERVAL 1 SECOND)"
    )
    report = q.recover()
    assert (report.dead_owner, report.before_restart, report.lease_expired) == (0, 0, 1)
    assert q.pop("jobs").body == b"expired lease" and q.pop("jobs") is None


def test_claims_record_the_node_they_were_made_on(q: mqlite.Queue, admin) -> None:
    q.push("jobs", b"x")
    ((node,),) = rows(admin, "SELECT CRC32(CONCAT(@@hostname, ':', @@port))")
    with q.claim("jobs") as m:
        assert m.owner_node == node and m.receipt.node == node
        assert rows(admin, "SELECT owner, owner_node FROM mqlite_messages") == [(m.owner, node)]


def test_failover_dsn_moves_to_the_next_host_when_the_first_is_down(server_dsn: str, dsn: str, admin) -> None:
    import socket as socket_module

    settings = parse_dsn(dsn)
    with socket_module.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    host, port = settings.hosts[0]
    listed = Settings(settings.user, settings.password, (("127.0.0.1", dead), (host, port)), settings.database).url()
    q = mqlite.Queue(listed, connect_timeout=1)
    q.apply_schema()
    assert q.push("jobs", b"via the second host") > 0
    assert q.pop("jobs").body == b"via the second host"
    assert q._pool._connector.primary == 1
    q.close()


def test_two_hosts_reporting_the_same_node_identity_are_refused(dsn: str) -> None:
    from mqlite.errors import ConfigError

    settings = parse_dsn(dsn)
    # The same server listed twice stands in for two nodes that report one identity.
    listed = Settings(settings.user, settings.password, settings.hosts * 2, settings.database).url()
    with pytest.raises(ConfigError, match="same node identity"):
        mqlite.Queue(listed).push("jobs", b"x")
